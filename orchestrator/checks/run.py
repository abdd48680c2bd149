"""The `run` form: a command in one machine, its exit code and, if asked, its stdout."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import Form, Probe, on_machine, sh, tail, text_problem
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
        return f"exit code {res.exit_code}, expected {expected}" + (f": {detail}" if detail else "")
    if check.stdout is None:
        return None
    out = res.stdout.strip()
    cond = check.stdout
    if cond.equals is not None and out != cond.equals.strip():
        return f"output is {tail(out, 80)!r}, expected {cond.equals.strip()!r}"
    shown = f"output {tail(out, 80)!r}"
    return text_problem(out, cond.contains, cond.matches, subject="output", shown=shown)


def _title(check: Check) -> str:
    return f"{check.machine}: {check.run}"


FORM = Form("run", _probes, _judge, _title)
