"""Every check form, registered once; a check planned once and judged from its outcomes.

A new form is its own module (its `Form`: probes, judgement, title) and one entry in
`FORMS` below, besides its condition's field in `scenario.model.Check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator import textsafe
from orchestrator.backends.contract import ExecResult
from orchestrator.checks import compare, file, kept, run, service
from orchestrator.checks.form import (
    PROBE_OUTPUT_LIMIT,
    Form,
    Outcome,
    Probe,
    Tampered,
    Unreachable,
)
from orchestrator.messages import _
from orchestrator.report import CheckResult
from orchestrator.scenario.model import CHECK_FORMS, Check

#: the longest message a check result keeps
MAX_MESSAGE = 1000
#: in a fail_message, the first line of what the check's (first) command printed
FOUND = "{found}"


def registry(forms: Sequence[Form]) -> dict[str, Form]:
    """Forms by name; each field of CHECK_FORMS has exactly one, and nothing else has any."""
    out: dict[str, Form] = {}
    for form in forms:
        if form.name in out:
            raise ValueError(f"check form `{form.name}` is registered twice")
        if form.name not in CHECK_FORMS:
            raise ValueError(f"check form `{form.name}` is no field of a Check ({CHECK_FORMS})")
        out[form.name] = form
    missing = [name for name in CHECK_FORMS if name not in out]
    if missing:
        raise ValueError(f"check forms without a registration: {', '.join(missing)}")
    return out


#: every check form by name
FORMS = registry([run.FORM, file.FORM, service.FORM, compare.DISTINCT, compare.EQUAL, kept.FORM])


def form_of(check: Check) -> Form:
    return FORMS[check.form]


@dataclass(frozen=True)
class Plan:
    """A check with its form and its probes, computed once; judged from their outcomes."""

    check: Check
    form: Form
    probes: tuple[Probe, ...]

    @property
    def title(self) -> str:
        return self.check.name or self.form.title(self.check)

    def judge(self, outcomes: Sequence[Outcome]) -> CheckResult:
        """Pass or fail the check from the outcomes of its probes, in their order."""
        for probe, outcome in zip(self.probes, outcomes, strict=True):
            problem = self._problem(probe, outcome)
            if problem:
                return self._failed(problem)
        results = [o for o in outcomes if isinstance(o, ExecResult)]
        failure = self.form.judge(self.check, results)
        if failure is None:
            return CheckResult(self.title, True)
        message = self.check.fail_message
        if message and FOUND in message:  # what the check found, in the author's sentence
            found = results[0].stdout.strip().splitlines() if results else []
            message = message.replace(FOUND, textsafe.cap(found[0], 80) if found else _("nothing"))
        return self._failed(message or failure)

    def _problem(self, probe: Probe, outcome: Outcome) -> str | None:
        """Why a probe's outcome cannot be judged at all, if it cannot."""
        if isinstance(outcome, Unreachable):
            return _("could not run on {machine}: {error}").format(
                machine=probe.machine, error=outcome.message
            )
        if isinstance(outcome, Tampered):
            return _("{problem} (on {machine})").format(
                problem=outcome.message, machine=probe.machine
            )
        if outcome.timed_out:
            return _("timed out after {seconds} s on {machine}").format(
                seconds=f"{self.check.timeout:g}", machine=probe.machine
            )
        if outcome.truncated:
            return _(
                "printed more than {size} KiB on {machine}, so it was stopped and not judged"
            ).format(size=PROBE_OUTPUT_LIMIT // 1024, machine=probe.machine)
        return None

    def _failed(self, message: str) -> CheckResult:
        """A failed result; its message quotes what a machine printed, so it is made clean."""
        return CheckResult(self.title, False, textsafe.cap(textsafe.clean(message), MAX_MESSAGE))


def plan(check: Check) -> Plan:
    form = form_of(check)
    return Plan(check, form, tuple(form.probes(check)))


def probes(check: Check) -> list[Probe]:
    """The commands a check needs, in the order its judgement expects their results."""
    return list(plan(check).probes)


def judge(check: Check, outcomes: Sequence[Outcome]) -> CheckResult:
    """Pass or fail one check from the results of its probes (grading plans each check once
    and judges its `Plan`)."""
    return plan(check).judge(outcomes)
