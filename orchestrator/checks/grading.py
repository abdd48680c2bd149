"""Grading: every check of some tasks planned once, run one batch per machine, judged."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from orchestrator.backends.contract import Executor, LabRef
from orchestrator.checks.form import Probe
from orchestrator.checks.registry import plan
from orchestrator.checks.trusted import PROBES_PER_BATCH, run_machine
from orchestrator.report import TaskResult
from orchestrator.scenario.model import Task

T = TypeVar("T")


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[n : n + size] for n in range(0, len(items), size)]


def grade(
    runner: Executor, lab: LabRef, tasks: Sequence[Task], *, workers: int = 16
) -> list[TaskResult]:
    """Run every check of `tasks`, one batch per machine, all machines at once; judge them.
    Probes run under a trusted shell and files are read by the engine (trusted.py)."""
    planned = [(task, plan(check)) for task in tasks for check in task.checks]
    by_machine: dict[str, list[tuple[Probe, float]]] = {}
    for _task, p in planned:
        for probe in p.probes:
            by_machine.setdefault(probe.machine, []).append((probe, p.check.timeout))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            m: [
                pool.submit(run_machine, runner, lab, m, chunk)
                for chunk in _chunks(items, PROBES_PER_BATCH)
            ]
            for m, items in by_machine.items()
        }
        outcomes = {m: iter([o for f in fs for o in f.result()]) for m, fs in futures.items()}
    results: dict[str, TaskResult] = {t.id: TaskResult.of(t) for t in tasks}
    for task, p in planned:
        results[task.id].checks.append(p.judge([next(outcomes[pr.machine]) for pr in p.probes]))
    return list(results.values())
