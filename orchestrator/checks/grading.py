"""Grading: every check of some tasks planned once, run one batch per machine, judged."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from orchestrator.backends.contract import Executor, LabRef
from orchestrator.checks.form import Outcome, Probe, Unreachable
from orchestrator.checks.registry import plan
from orchestrator.checks.trusted import PROBES_PER_BATCH, run_machine
from orchestrator.messages import N_, _, speaking
from orchestrator.report import TaskResult
from orchestrator.scenario.model import Task

T = TypeVar("T")


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[n : n + size] for n in range(0, len(items), size)]


#: a `kept` check's first outcome when nothing ran before a reboot
NO_REBOOT = N_("it was not run before a reboot")


def run_before(
    runner: Executor, lab: LabRef, tasks: Sequence[Task], *, workers: int = 16
) -> dict[Probe, Outcome]:
    """The outcomes of the probes that run before the tasks' reboot (`kept` checks' first)."""
    early = {  # each probe once: two checks may ask the same before the reboot
        probe: check.timeout
        for task in tasks
        for check in task.checks
        for probe in plan(check).probes
        if probe.before_reboot
    }
    outcomes = _run(runner, lab, list(early.items()), workers)
    return {probe: next(outcomes[probe.machine]) for probe in early}


def grade(
    runner: Executor,
    lab: LabRef,
    tasks: Sequence[Task],
    *,
    earlier: Mapping[Probe, Outcome] | None = None,
    workers: int = 16,
) -> list[TaskResult]:
    """Run every check of `tasks`, one batch per machine, all machines at once; judge them.
    Probes run under a trusted shell and files are read by the engine (trusted.py); those
    that run before a reboot are answered from `earlier`."""
    planned = [(task, plan(check)) for task in tasks for check in task.checks]
    now = [(pr, p.check.timeout) for _t, p in planned for pr in p.probes if not pr.before_reboot]
    outcomes = _run(runner, lab, now, workers)
    known = earlier or {}

    def outcome(probe: Probe) -> Outcome:
        if probe.before_reboot:
            return known.get(probe, Unreachable(_(NO_REBOOT)))
        return next(outcomes[probe.machine])

    results: dict[str, TaskResult] = {t.id: TaskResult.of(t) for t in tasks}
    for task, p in planned:
        results[task.id].checks.append(p.judge([outcome(pr) for pr in p.probes]))
    return list(results.values())


def _run(
    runner: Executor, lab: LabRef, items: Sequence[tuple[Probe, float]], workers: int
) -> dict[str, Iterator[Outcome]]:
    """Each machine's outcomes in the order of its probes (with their timeouts); batches of
    all machines at once."""
    by_machine: dict[str, list[tuple[Probe, float]]] = {}
    for probe, timeout in items:
        by_machine.setdefault(probe.machine, []).append((probe, timeout))
    if not by_machine:
        return {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            m: [
                pool.submit(speaking(run_machine), runner, lab, m, chunk)
                for chunk in _chunks(items, PROBES_PER_BATCH)
            ]
            for m, items in by_machine.items()
        }
        return {m: iter([o for f in fs for o in f.result()]) for m, fs in futures.items()}
