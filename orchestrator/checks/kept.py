"""The `kept` form: a command whose output a reboot does not change (an `after_reboot` task's).

Its first probe runs before the task's reboot and its second after it; grading answers the
first from what `run_before` gathered (grading.py). Without a reboot the first has no
outcome and the check cannot pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import Form, Probe, on_machine, sh, tail
from orchestrator.scenario.model import Check


def _command(check: Check) -> str:
    assert check.kept is not None
    return check.kept


def _probes(check: Check) -> list[Probe]:
    (after,) = on_machine(check, sh(_command(check)))
    return [dataclasses.replace(after, before_reboot=True), after]


def _judge(check: Check, results: Sequence[ExecResult]) -> str | None:
    before, after = results
    for when, res in (("before", before), ("after", after)):
        if res.exit_code != 0:
            detail = tail(res.stderr) or tail(res.stdout)
            return f"it failed {when} the reboot (exit {res.exit_code})" + (
                f": {detail}" if detail else ""
            )
    first, second = before.stdout.strip(), after.stdout.strip()
    if not first:
        return "it printed nothing before the reboot"
    if first != second:
        return f"it printed {tail(first, 80)!r} before the reboot and {tail(second, 80)!r} after it"
    return None


def _title(check: Check) -> str:
    return f"{check.machine}: {_command(check)} (the same after a reboot)"


FORM = Form("kept", _probes, _judge, _title)
