"""Grading machines: made by each check from a copy of a lab machine, booted, removed.

A task graded on a grading machine judges what the student's work does to a new machine
(a clone of the sealed template at its first boot, a new instance booted from the
student's user-data), not what the student's own machine holds. The copy is of the
source as the student left it (`state: current`) or as `up` left it (`state: start`);
`seed` files are written into it and then it boots again, so that its boot reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator.backends.contract import FileReader, MachineRemoval, StartCopies
from orchestrator.checks.reads import follow
from orchestrator.errors import GuestlabError, MemberUnreachable
from orchestrator.lab.bound import Lab
from orchestrator.lab.reporter import Reporter
from orchestrator.messages import _, speaking
from orchestrator.scenario.model import Machine, SeedFile, Task
from orchestrator.state import Store, lab_lock

#: the most of a seed file read from a lab machine (a user-data file is a few KiB)
SEED_LIMIT = 256 * 1024


def named(lab: Lab, tasks: Sequence[Task]) -> list[Machine]:
    """The grading machines the tasks' checks name, each once, in the scenario's order."""
    wanted = {m for t in tasks for m in t.machines}
    return [m for m in lab.grading if m.name in wanted]


@contextlib.contextmanager
def made(
    lab: Lab, store: Store, machines: Sequence[Machine], reporter: Reporter
) -> Iterator[dict[str, str]]:
    """Make the grading machines for one check, then remove them; yields the ones that
    could not be made, each with why (their tasks fail with it)."""
    failed: dict[str, str] = {}

    def one(m: Machine) -> None:
        reporter.line(
            _("making {machine}, a new copy of {source}, to grade it").format(
                machine=m.name, source=m.clone_of
            )
        )
        try:
            _make(lab, m, reporter)
        except MemberUnreachable:
            raise  # the lab is out of reach, not wrong: no grade at all
        except GuestlabError as exc:
            why = _("a new copy of {source} did not come up: {error}")
            failed[m.name] = why.format(source=m.clone_of, error=exc)[:500]
            reporter.line(failed[m.name])

    def copies_of(source: str | None) -> None:
        for m in machines:
            if m.clone_of == source:
                one(m)

    try:
        # copies of one source one after the other (an engine may pause the source while it
        # copies it: Docker's commit does), copies of different sources side by side
        sources = list(dict.fromkeys(m.clone_of for m in machines))
        with lab_lock(lab.ref.key), ThreadPoolExecutor(max(1, len(sources))) as pool:
            list(pool.map(speaking(copies_of), sources))
        if machines:
            store.event(lab.ref.key, "grading", machines=[m.name for m in machines])
        yield failed
    finally:
        for m in machines:
            with contextlib.suppress(GuestlabError), lab_lock(lab.ref.key):
                backend = lab.backend_for(m.name)
                assert isinstance(backend, MachineRemoval)
                backend.remove_machine(lab.ref, m.name)


def _make(lab: Lab, machine: Machine, reporter: Reporter) -> None:
    assert machine.clone_of is not None and machine.grading is not None
    backend = lab.backend_for(machine.name)
    assert isinstance(backend, MachineRemoval)
    backend.remove_machine(lab.ref, machine.name)  # one a killed check left behind
    source, target = lab.spec(machine.clone_of), lab.spec(machine.name)
    if machine.grading.state == "current":
        backend.clone(source, target, reporter.line)
    else:
        assert isinstance(backend, StartCopies)
        backend.clone_start(source, target, reporter.line)
    if machine.grading.seed:
        for seed in machine.grading.seed:
            data = _seed_data(lab, seed)
            if data is not None:
                backend.put_file(lab.ref, machine.name, seed.dest, data, 0o644)
        backend.restart(lab.ref, [target], reporter.line)


def _seed_data(lab: Lab, seed: SeedFile) -> bytes | None:
    """The seed's bytes; None when the lab machine has no such file (nothing is written)."""
    if seed.content is not None:
        return seed.content.encode()
    assert seed.machine is not None and seed.path is not None
    backend = lab.backend_for(seed.machine)
    if isinstance(backend, FileReader):
        got = backend.read_file(lab.ref, seed.machine, seed.path, SEED_LIMIT + 1)
        if got is not None:
            got = follow(backend, lab.ref, seed.machine, seed.path, got)
            if got.kind != "regular":
                return None
            return got.data[:SEED_LIMIT]
    # no engine read from here: the machine's own cat (the file is the student's anyway)
    res = lab.exec(
        lab.ref, seed.machine, ["head", "-c", str(SEED_LIMIT), "--", seed.path], timeout=30
    )
    return res.stdout.encode() if res.ok else None
