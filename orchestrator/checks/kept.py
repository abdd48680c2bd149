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
from orchestrator.messages import _
from orchestrator.scenario.model import Check


def _command(check: Check) -> str:
    assert check.kept is not None
    return check.kept


def _probes(check: Check) -> list[Probe]:
    (after,) = on_machine(check, sh(_command(check)))
    return [dataclasses.replace(after, before_reboot=True), after]


def _judge(check: Check, results: Sequence[ExecResult]) -> str | None:
    before, after = results
    failing = (
        (_("it failed before the reboot (exit {code})"), before),
        (_("it failed after the reboot (exit {code})"), after),
    )
    for when, res in failing:
        if res.exit_code != 0:
            detail = tail(res.stderr) or tail(res.stdout)
            problem = when.format(code=res.exit_code)
            return f"{problem}: {detail}" if detail else problem
    first, second = before.stdout.strip(), after.stdout.strip()
    if not first:
        return _("it printed nothing before the reboot")
    if first != second:
        return _("it printed {before} before the reboot and {after} after it").format(
            before=repr(tail(first, 80)), after=repr(tail(second, 80))
        )
    return None


def _title(check: Check) -> str:
    return _("{machine}: {command} (the same after a reboot)").format(
        machine=check.machine, command=_command(check)
    )


FORM = Form("kept", _probes, _judge, _title)
