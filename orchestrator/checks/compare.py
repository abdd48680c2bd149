"""The `distinct` and `equal` forms: one command on several machines, outputs compared.

Both run the same probes and fail the same way when the command fails; they differ only
in what they ask of the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import Form, Probe, sh, tail
from orchestrator.messages import _
from orchestrator.scenario.model import Check, MachinesCommand

#: machine -> its stripped stdout; None when the outputs meet the form, else why not
Verdict = Callable[[dict[str, str]], str | None]


def _no_two_alike(outputs: dict[str, str]) -> str | None:
    seen: dict[str, str] = {}
    for machine, out in outputs.items():
        if out in seen:
            return _("{first} and {second} give the same output: {output}").format(
                first=seen[out], second=machine, output=tail(out, 80)
            )
        seen[out] = machine
    return None


def _all_alike(outputs: dict[str, str]) -> str | None:
    if len(set(outputs.values())) > 1:
        shown = "; ".join(f"{m}: {tail(o, 60)}" for m, o in outputs.items())
        return _("the outputs differ ({outputs})").format(outputs=shown)
    return None


def _comparing(name: str, verdict: Verdict) -> Form:
    """The form `name`, whose outputs pass when `verdict` finds nothing wrong."""

    def command(check: Check) -> MachinesCommand:
        multi: MachinesCommand | None = getattr(check, name)
        assert multi is not None
        return multi

    def probes(check: Check) -> list[Probe]:
        multi = command(check)
        return [Probe(m, sh(multi.run)) for m in multi.machines]

    def judge(check: Check, results: Sequence[ExecResult]) -> str | None:
        multi = command(check)
        for machine, res in zip(multi.machines, results, strict=True):
            if res.exit_code != 0:
                return (
                    f"`{multi.run}` failed on {machine} (exit {res.exit_code}): {tail(res.stderr)}"
                )
        return verdict({m: r.stdout.strip() for m, r in zip(multi.machines, results, strict=True)})

    def title(check: Check) -> str:
        multi = command(check)
        return f"{name} on {', '.join(multi.machines)}: {multi.run}"

    return Form(name, probes, judge, title)


DISTINCT = _comparing("distinct", _no_two_alike)
EQUAL = _comparing("equal", _all_alike)
