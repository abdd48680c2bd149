"""The `run` form: a command in one machine, its exit code and, if asked, its stdout."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import Form, Probe, on_machine, sh, tail, text_problem
from orchestrator.messages import _
from orchestrator.scenario.model import Check


def _command(check: Check) -> str:
    assert check.run is not None
    return check.run


def _probes(check: Check) -> list[Probe]:
    return on_machine(check, sh(_command(check)))


def _judge(check: Check, results: Sequence[ExecResult]) -> str | None:
    res = results[0]
    expected = check.exit_code if check.exit_code is not None else 0
    if res.exit_code != expected:
        detail = tail(res.stderr) or tail(res.stdout)
        problem = _("exit code {code}, expected {expected}").format(
            code=res.exit_code, expected=expected
        )
        return f"{problem}: {detail}" if detail else problem
    if check.stdout is None:
        return None
    out = res.stdout.strip()
    cond = check.stdout
    if cond.equals is not None and out != cond.equals.strip():
        return _("output is {output}, expected {expected}").format(
            output=repr(tail(out, 80)), expected=repr(cond.equals.strip())
        )
    shown = _("output {output}").format(output=repr(tail(out, 80)))
    return text_problem(out, cond.contains, cond.matches, subject=_("output"), shown=shown)


def _title(check: Check) -> str:
    return f"{check.machine}: {check.run}"


FORM = Form("run", _probes, _judge, _title)
