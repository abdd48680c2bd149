"""A test module's one lab, brought up once for its proof and then its wrong answers: the
machines are booted once (a VM costs minutes under emulation), and `down` leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.lab.prove import prove_up_lab
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id


class ModuleLab:
    """Commands in the lab's machines, its checks and its solutions."""

    def __init__(self, lab: Any, store: Store) -> None:
        self.lab, self.store = lab, store

    def record(self) -> Any:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        return record

    def sh(self, machine: str, script: str) -> str:
        res = self.lab.exec(self.lab.ref, machine, ["sh", "-c", script], timeout=120)
        assert res.ok, res
        return str(res.stdout)

    def task(self, task: str) -> Any:
        [result] = lifecycle.check(self.lab, self.record(), self.store, [task]).tasks
        return result

    def passes(self, task: str) -> bool:
        return bool(self.task(task).passed)

    def solve(self, *tasks: str) -> None:
        lifecycle.solve(self.lab, self.record(), self.store, list(tasks))

    def answer(self, machine: str, name: str, text: str) -> None:
        self.sh(machine, f"printf '%s\\n' '{text}' > /root/{name}")

    def failure_while_mounted(
        self, machine: str, mount: str, answer: tuple[str, str], task: str, point: str
    ) -> str:
        """The task's check messages while `mount` (a shell line) covers `point` and the
        file /root/NAME holds the answer that matches the fake; the task must fail."""
        self.sh(machine, mount)
        self.answer(machine, *answer)
        try:
            result = self.task(task)
        finally:
            self.sh(machine, f"umount {point}")
        messages = " ".join(c.message for c in result.checks)
        assert not result.passed, messages
        return messages

    def prove(self) -> None:
        """`guestlab prove`'s steps on the lab as `up` left it; it ends reset."""
        proof = prove_up_lab(self.lab, self.store, lifecycle.Silent())
        steps = "\n".join(f"{s.name}: {'ok' if s.ok else s.detail}" for s in proof.steps)
        assert proof.ok, steps
        assert proof.steps[-1].name == "every task fails after reset"


@contextmanager
def module_lab(scenario: str, backend: str, *engines: str) -> Iterator[ModuleLab]:
    """The lab of `scenario` on `backend` up, then down with nothing left behind."""
    for name in (backend, *engines):
        engine(name)
    store = Store()
    lab = lifecycle.prepare(scenario, student_id(), backend)
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        yield ModuleLab(lab, store)
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
        store.close()
    assert all(b.find(lab.ref) == {} for b in lab.backends)
