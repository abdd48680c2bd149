"""`prove`: the proof an author needs before shipping a scenario, as named, timed steps.

up (as a student nobody else is); every task fails; each task passes right after its
own solution (an `after_reboot` task through its reboot, as `check` grades it), and all
of them together once every solution is in; reset
brings the failing state back; down leaves nothing any backend can find. The first step
that does not hold ends the proof; down runs in every case and is a step of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator import teardown
from orchestrator.errors import GuestlabError, ProofFailed
from orchestrator.lab.bound import Lab
from orchestrator.lab.bring_up import up
from orchestrator.lab.opening import prepare
from orchestrator.lab.reporter import Reporter
from orchestrator.lab.verbs import check, reset, solve
from orchestrator.messages import _
from orchestrator.report import Report
from orchestrator.scenario.catalog import resolve
from orchestrator.scenario.load import load_file
from orchestrator.state import LabRecord, Store


@dataclass(frozen=True)
class StepResult:
    """One step of a proof: its name, whether it held, its seconds, and why not."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class Proof:
    """The steps of one scenario's proof on one backend."""

    scenario: str
    backend: str
    student: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def raise_if_failed(self) -> None:
        """ProofFailed naming the first step that did not hold."""
        step = self.failed
        if step is not None:
            raise ProofFailed(
                _("{scenario} on {backend}: step `{name}` failed: {detail}").format(
                    scenario=self.scenario, backend=self.backend, name=step.name, detail=step.detail
                ),
                hint=_("the table above shows every step; `guestlab up` the scenario to look"),
            )


def prove_student() -> str:
    """A student id no one else has, so that a proof never meets a real lab."""
    return f"prove-{uuid.uuid4().hex[:8]}"


def declared_backends(ref: str) -> list[str]:
    """The backends a scenario (an id or a file) declares, its default first."""
    return list(load_file(resolve(ref)).backends)


def prove(ref: str, backend: str | None, store: Store, reporter: Reporter) -> Proof:
    """Prove the scenario `ref` (an id or a file) on `backend` (its default when None)."""
    return prove_lab(prepare(ref, prove_student(), backend), store, reporter)


def prove_lab(lab: Lab, store: Store, reporter: Reporter) -> Proof:
    """Prove a prepared lab; its student must be one nobody uses (`prove_student`)."""
    proof = Proof(lab.scenario.id, lab.backend.name, lab.ref.student)
    step = _stepper(proof, reporter)
    try:
        if step("up", lambda: _up(lab, store, reporter)):
            _prove_tasks(lab, store, reporter, step)
    finally:
        step(_("down leaves nothing"), lambda: _down(lab, store))
    return proof


def prove_up_lab(lab: Lab, store: Store, reporter: Reporter) -> Proof:
    """The proof's steps between up and down, on a lab just brought up that nobody has
    worked on; it ends reset. For a test that goes on with the same machines (a VM
    booted once for the proof and the test), and then owes `down` its own check."""
    proof = Proof(lab.scenario.id, lab.backend.name, lab.ref.student)
    _prove_tasks(lab, store, reporter, _stepper(proof, reporter))
    return proof


def _stepper(proof: Proof, reporter: Reporter) -> Callable[[str, Callable[[], str | None]], bool]:
    """A function that runs one named step of `proof`, records it and says if it held."""

    def step(name: str, fn: Callable[[], str | None]) -> bool:
        # a line, not a Reporter step: the lifecycle's own steps run inside these
        reporter.line(_("proving: {name}").format(name=name))
        started = time.monotonic()
        try:
            problem = fn()
        except GuestlabError as exc:
            problem = str(exc) or type(exc).__name__
        proof.steps.append(StepResult(name, not problem, time.monotonic() - started, problem or ""))
        return not problem

    return step


def _prove_tasks(
    lab: Lab,
    store: Store,
    reporter: Reporter,
    step: Callable[[str, Callable[[], str | None]], bool],
) -> None:
    """The steps between up and down; the first that fails ends them."""

    def record() -> LabRecord:
        found = store.lab(lab.ref.key)
        if found is None:
            raise ProofFailed(_("the state store lost lab {key}").format(key=lab.ref.key))
        return found

    def all_fail() -> str | None:
        return _passing(check(lab, record(), store, reporter=reporter))

    if not step(_("every task fails after up"), all_fail):
        return
    for task in lab.scenario.tasks:

        def solved(task_id: str = task.id) -> str | None:
            solve(lab, record(), store, [task_id])
            report = check(lab, record(), store, [task_id], reporter=reporter)
            return None if report.passed else _failing(report)

        name = (
            _("{task} passes after its solution and a reboot")
            if task.after_reboot
            else _("{task} passes after its solution")
        ).format(task=task.id)
        if not step(name, solved):
            return

    def all_pass() -> str | None:
        report = check(lab, record(), store, reporter=reporter)
        return None if report.passed else _failing(report)

    # one solution may undo another's work: together, they must all still hold
    if not step(_("every task passes together"), all_pass):
        return
    if not step("reset", lambda: reset(lab, record(), store, reporter)):
        return
    step(_("every task fails after reset"), all_fail)


def _up(lab: Lab, store: Store, reporter: Reporter) -> None:
    up(lab, store, reporter)


def _down(lab: Lab, store: Store) -> str | None:
    teardown.down(lab.ref, [b.name for b in lab.backends], store)
    left = [f"{b.name}: {', '.join(b.find(lab.ref))}" for b in lab.backends if b.find(lab.ref)]
    if store.lab(lab.ref.key) is not None:
        left.append(_("the state store still knows the lab"))
    return _("left behind: {what}").format(what="; ".join(left)) if left else None


def _passing(report: Report) -> str | None:
    """Why a report of a lab nobody has worked on is wrong: the tasks that pass."""
    passing = [t.id for t in report.tasks if t.passed]
    if not passing:
        return None
    return _("passes before any work: {tasks}").format(tasks=", ".join(passing))


def _failing(report: Report) -> str:
    """What still fails in a report, one check per line's worth, bounded."""
    parts = [f"{t.id}: {c.name}: {c.message}" for t in report.tasks for c in t.failing]
    parts += [_("{task}: unproven").format(task=t.id) for t in report.tasks if t.unproven]
    text = "; ".join(parts) or _("no check failed, yet the report did not pass")
    return text[:500]


def proofs_junit(proofs: list[Proof]) -> str:
    """JUnit XML: a suite per backend, a case per step (`prove --format junit`)."""
    from orchestrator import junit  # here: ElementTree only for the JUnit form

    suites = [
        junit.Suite(
            name=f"guestlab.prove.{p.scenario}.{p.backend}",
            cases=[junit.outcome_case(p.backend, s.name, s.ok, s.detail) for s in p.steps],
            properties=[("student", p.student)],
        )
        for p in proofs
    ]
    return junit.document(suites, name=f"guestlab.prove.{proofs[0].scenario}")
