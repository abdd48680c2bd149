"""The lifecycle of one lab: open it, bring it up, check, hint, solve, reset.

Nothing here prints: progress goes to a Reporter, results come back as values, problems
as GuestlabError. Taking labs down (and collecting what nobody knows) is `teardown`.

- `bound`: `Lab`, a scenario rendered for one student and bound to its backends.
- `backend_choice`: which backend can hold a scenario, refused before anything is made.
- `opening`: `prepare` a new lab, `open_lab` one from the state store.
- `bring_up`: `up`, the lifecycle as named, timed, recorded steps.
- `verbs`: the student's verbs on a lab that is up (grading is `orchestrator.checks`),
  and the reboot that `after_reboot` tasks are graded after.
- `prove`: `prove`, an author's proof that a scenario is graded and solvable.
- `reporter`: the `Reporter` protocol and `Silent`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.lab.backend_choice import choose_backend, required_capabilities
    from orchestrator.lab.bound import UNITS, VM_BACKEND, Lab, parse_size
    from orchestrator.lab.bring_up import UpResult, refuse_host_root, up
    from orchestrator.lab.opening import open_lab, prepare, scenario_errors
    from orchestrator.lab.reporter import Reporter, Silent
    from orchestrator.lab.verbs import (
        check,
        hint,
        reboot_machines,
        reboots_since,
        require_up,
        reset,
        restart,
        select_tasks,
        solve,
    )

#: each name and the module that defines it: imported when first used, so that a command
#: that only opens a lab does not load the bring-up, the YAML reader or Jinja2
_WHERE = {
    **dict.fromkeys(("choose_backend", "required_capabilities"), "backend_choice"),
    **dict.fromkeys(("UNITS", "VM_BACKEND", "Lab", "parse_size"), "bound"),
    **dict.fromkeys(("UpResult", "refuse_host_root", "up"), "bring_up"),
    **dict.fromkeys(("open_lab", "prepare", "scenario_errors"), "opening"),
    **dict.fromkeys(("Reporter", "Silent"), "reporter"),
    **dict.fromkeys(
        (
            "check",
            "hint",
            "reboot_machines",
            "reboots_since",
            "require_up",
            "reset",
            "restart",
            "select_tasks",
            "solve",
        ),
        "verbs",
    ),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "UNITS",
    "VM_BACKEND",
    "Lab",
    "Reporter",
    "Silent",
    "UpResult",
    "check",
    "choose_backend",
    "hint",
    "open_lab",
    "parse_size",
    "prepare",
    "reboot_machines",
    "reboots_since",
    "refuse_host_root",
    "require_up",
    "required_capabilities",
    "reset",
    "restart",
    "scenario_errors",
    "select_tasks",
    "solve",
    "up",
]
