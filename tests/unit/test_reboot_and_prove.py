"""after_reboot in the format, the reboot `check` does before grading, and prove's steps.

No engine: grading and the lifecycle's engine work are replaced by fakes that record what
was asked of them, in order.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator import backends, checks
from orchestrator import lab as lifecycle
from orchestrator.backends.contract import Backend, LabRef, MachineSpec, Progress
from orchestrator.errors import MachineUnavailable, ProofFailed, ScenarioError
from orchestrator.lab import prove as proving
from orchestrator.report import CheckResult, Report, TaskResult
from orchestrator.scenario.load import load_text
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.model_base import parse
from orchestrator.scenario.schema import json_schema
from orchestrator.state import Store

TASKS: list[dict[str, Any]] = [
    {"id": "plain", "title": "P", "checks": [{"machine": "a", "run": "true"}]},
    {
        "id": "lasting",
        "title": "L",
        "after_reboot": True,
        "checks": [
            {"distinct": {"machines": ["b", "a"], "run": "cat /etc/machine-id"}},
            {"machine": "b", "service": {"name": "x", "active": True}},
        ],
    },
]


def scenario(tasks: list[dict[str, Any]] | None = None) -> Scenario:
    return parse(
        Scenario,
        {
            "apiVersion": "guestlab/v1",
            "kind": "Scenario",
            "metadata": {"id": "demo", "title": "Demo"},
            "backends": ["docker"],
            "machines": [{"name": "a"}, {"name": "b", "clone_of": "a"}],
            "tasks": TASKS if tasks is None else tasks,
        },
    )


# -- the format ------------------------------------------------------------------------
def test_after_reboot_is_false_unless_a_task_says_so() -> None:
    plain, lasting = scenario().tasks
    assert (plain.after_reboot, lasting.after_reboot) == (False, True)
    # the machines its checks name, each once, in the order they are named
    assert lasting.machines == ["b", "a"]
    assert lifecycle.reboot_machines(scenario().tasks) == ["b", "a"]
    assert lifecycle.reboot_machines([plain]) == []


def test_the_schema_offers_after_reboot_as_a_boolean() -> None:
    schema = json_schema()
    prop = schema["$defs"]["Task"]["properties"]["after_reboot"]
    assert prop["type"] == "boolean" and prop["default"] is False
    assert "reboot" in prop["description"]


def test_a_wrong_after_reboot_is_reported_at_its_line(tmp_path: Path) -> None:
    text = (
        "apiVersion: guestlab/v1\nkind: Scenario\nmetadata: {id: demo, title: Demo}\n"
        "backends: [docker]\nmachines: [{name: a}]\ntasks:\n  - id: t\n    title: T\n"
        "    after_reboot: sometimes\n    checks: [{machine: a, run: 'true'}]\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_text(text, str(tmp_path / "demo.yaml"), labs_dir=None)
    [problem] = caught.value.problems
    assert problem.line == 9 and "after_reboot" in str(problem), problem


def test_every_backend_implements_restart_as_the_contract_says() -> None:
    wanted = inspect.signature(Backend.restart)
    for name, where in backends.REGISTRY.items():
        module, cls = where.split(":")
        method = getattr(getattr(importlib.import_module(module), cls), "restart", None)
        assert callable(method), name
        assert list(inspect.signature(method).parameters) == list(wanted.parameters), name


# -- check: the reboot before grading ------------------------------------------------------
class RecordingBackend:
    """Restarts nothing, records what it was asked; its name is the lab's backend."""

    name = "docker"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "docker"

    def __init__(self, log: list[str], broken: str = "") -> None:
        self.log = log
        self.broken = broken

    def availability(self) -> Any:
        from orchestrator.backends.contract import Availability

        return Availability(True, "fake")

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        progress("restarting")
        self.log.append("restart " + ",".join(m.name for m in machines))
        if self.broken:
            raise MachineUnavailable(self.broken)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Grading replaced: every check passes; the log says when grading happened."""
    log: list[str] = []

    def grade(_runner: Any, _ref: LabRef, tasks: Sequence[Any], **_: Any) -> list[TaskResult]:
        log.append("grade " + ",".join(t.id for t in tasks))
        return [TaskResult(t.id, t.title, t.points, [CheckResult("c", True)]) for t in tasks]

    monkeypatch.setattr(checks, "grade", grade)
    monkeypatch.setattr(checks, "run_before", lambda *_a, **_k: {})
    return log


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.steps: list[str] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.steps.append(name)
        try:
            yield
        except BaseException:
            self.steps.append(f"{name} failed")  # a console shows a cross, not a tick
            raise

    def line(self, text: str) -> None:
        self.lines.append(text)


def up_lab(store: Store, log: list[str], broken: str = "") -> tuple[lifecycle.Lab, Any]:
    sc = scenario()
    backend = RecordingBackend(log, broken)
    lab = lifecycle.Lab(LabRef(sc.id, "al"), sc, Path("/x"), backend, {})  # type: ignore[arg-type]
    store.put_lab(
        lab.ref.key,
        scenario=sc.id,
        student="al",
        backends=["docker"],
        scenario_path="/x",
        params={},
        status="up",
    )
    record = store.lab(lab.ref.key)
    return lab, record


def test_check_reboots_the_named_machines_before_grading_and_says_so(
    store: Store, graded: list[str]
) -> None:
    lab, record = up_lab(store, graded)
    shown = Lines()
    report = lifecycle.check(lab, record, store, reporter=shown)
    assert graded == ["restart b,a", "grade plain,lasting"]
    assert report.rebooted == ["b", "a"] and report.passed
    assert "rebooting b to prove the change survives" in shown.lines
    assert shown.steps == ["reboot"]
    # recorded before the restart, so that a shell it ends can say why
    assert lifecycle.reboots_since(store, lab, "a", 0.0)
    assert not lifecycle.reboots_since(store, lab, "c", 0.0)
    # a task that needs no reboot is graded without one
    graded.clear()
    assert lifecycle.check(lab, record, store, ["plain"]).rebooted == []
    assert graded == ["grade plain"]


def test_no_reboot_grades_as_is_and_leaves_the_task_unproven(
    store: Store, graded: list[str]
) -> None:
    lab, record = up_lab(store, graded)
    report = lifecycle.check(lab, record, store, reboot=False)
    assert graded == ["grade plain,lasting"]  # nothing restarted
    plain, lasting = report.tasks
    assert plain.passed and not plain.unproven
    assert lasting.unproven and not lasting.passed and lasting.points == 0
    assert all(c.passed for c in lasting.checks)  # its checks did pass
    assert report.rebooted == [] and not report.passed
    stored = store.attempts(lab.ref.key)[-1].report
    assert stored.tasks[1].unproven  # the state store keeps it as it was graded


def test_a_machine_that_does_not_come_back_fails_its_tasks_not_the_check(
    store: Store, graded: list[str]
) -> None:
    lab, record = up_lab(store, graded, broken="machine b is not running")
    shown = Lines()
    report = lifecycle.check(lab, record, store, reporter=shown)
    assert shown.steps == ["reboot", "reboot failed"]
    assert graded == ["restart b,a", "grade plain,lasting"]  # graded all the same
    plain, lasting = report.tasks
    assert plain.passed and not lasting.passed and report.rebooted == []
    [why] = lasting.failing
    assert why.name == "the machine comes back from a reboot"
    assert why.message.startswith("b: the reboot failed: machine b is not running")


# -- prove's steps ---------------------------------------------------------------------
class World:
    """What a lab would be: which tasks are solved, what the backend still holds."""

    def __init__(self, *, broken: str = "", passes_at_start: str = "", leaks: bool = False):
        self.solved: set[str] = set()
        self.broken, self.passes_at_start, self.leaks = broken, passes_at_start, leaks
        self.calls: list[str] = []
        self.up = False


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, store: Store) -> World:
    w = World()
    monkeypatch.setattr(proving, "up", lambda lab, s, r: fake_up(w, lab, s))
    monkeypatch.setattr(proving, "solve", lambda lab, rec, s, ids: fake_solve(w, ids))
    monkeypatch.setattr(proving, "check", lambda lab, rec, s, ids=(), **kw: fake_check(w, lab, ids))
    monkeypatch.setattr(proving, "reset", lambda lab, rec, s, r: fake_reset(w))
    monkeypatch.setattr(proving.teardown, "down", lambda ref, names, s: fake_down(w, ref, s))
    return w


def fake_up(w: World, lab: lifecycle.Lab, store: Store) -> None:
    w.calls.append("up")
    w.up = True
    store.put_lab(
        lab.ref.key,
        scenario=lab.scenario.id,
        student=lab.ref.student,
        backends=["docker"],
        scenario_path="/x",
        params={},
        status="up",
    )


def fake_solve(w: World, ids: Sequence[str]) -> list[str]:
    w.calls.append(f"solve {ids[0]}")
    if ids[0] != w.broken:
        w.solved.add(ids[0])
    return list(ids)


def fake_check(w: World, lab: lifecycle.Lab, ids: Sequence[str]) -> Report:
    w.calls.append("check " + (",".join(ids) or "all"))
    tasks = [t for t in lab.scenario.tasks if not ids or t.id in ids]
    results = [
        TaskResult(
            t.id,
            t.title,
            t.points,
            [CheckResult("c", t.id in w.solved or t.id == w.passes_at_start, "not yet")],
        )
        for t in tasks
    ]
    return Report.now(lab.scenario.id, lab.ref.student, "docker", results)


def fake_reset(w: World) -> None:
    w.calls.append("reset")
    w.solved.clear()


def fake_down(w: World, ref: LabRef, store: Store) -> dict[str, Any]:
    w.calls.append("down")
    w.up = w.leaks
    store.delete_lab(ref.key)
    return {}


class FindingBackend(RecordingBackend):
    def __init__(self, world: World) -> None:
        super().__init__([])
        self.world = world

    def find(self, lab: LabRef | None = None) -> dict[str, Any]:
        from orchestrator.backends.contract import FoundResources

        return {lab.key: FoundResources(machines=["a"])} if self.world.up and lab else {}


def proof_of(world: World, store: Store) -> proving.Proof:
    sc = scenario()
    lab = lifecycle.Lab(
        LabRef(sc.id, proving.prove_student()),
        sc,
        Path("/x"),
        FindingBackend(world),
        {},  # type: ignore[arg-type]
    )
    return proving.prove_lab(lab, store, Lines())


def test_a_sound_scenario_passes_every_step_in_order(world: World, store: Store) -> None:
    proof = proof_of(world, store)
    assert [(s.name, s.ok) for s in proof.steps] == [
        ("up", True),
        ("every task fails after up", True),
        ("plain passes after its solution", True),
        ("lasting passes after its solution and a reboot", True),
        ("every task passes together", True),
        ("reset", True),
        ("every task fails after reset", True),
        ("down leaves nothing", True),
    ]
    assert world.calls == [
        "up", "check all", "solve plain", "check plain", "solve lasting",
        "check lasting", "check all", "reset", "check all", "down",
    ]  # fmt: skip
    assert proof.ok and proof.student.startswith("prove-") and proof.failed is None
    proof.raise_if_failed()
    junit = proving.proofs_junit([proof])
    assert junit.count("<testcase") == 8 and "<failure" not in junit


def test_the_first_step_that_fails_ends_the_proof_but_not_down(world: World, store: Store) -> None:
    world.broken = "lasting"
    proof = proof_of(world, store)
    failed = proof.failed
    assert failed is not None and failed.name == "lasting passes after its solution and a reboot"
    assert "lasting: c: not yet" in failed.detail
    assert [s.name for s in proof.steps][-2:] == [failed.name, "down leaves nothing"]
    assert proof.steps[-1].ok and "reset" not in world.calls
    with pytest.raises(ProofFailed, match="step `lasting passes after its solution"):
        proof.raise_if_failed()
    assert "<failure" in proving.proofs_junit([proof])


def test_a_task_that_passes_before_any_work_is_named(world: World, store: Store) -> None:
    world.passes_at_start = "plain"
    proof = proof_of(world, store)
    assert proof.failed is not None and proof.failed.name == "every task fails after up"
    assert proof.failed.detail == "passes before any work: plain"


def test_what_down_leaves_behind_fails_the_proof(world: World, store: Store) -> None:
    world.leaks = True
    proof = proof_of(world, store)
    assert proof.failed is not None and proof.failed.name == "down leaves nothing"
    assert proof.failed.detail == "left behind: docker: demo--" + proof.student
