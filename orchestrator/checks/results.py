"""What grading gives back: a result per check, per task, and the JSON-able report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.scenario.model import Task


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


@dataclass
class TaskResult:
    task: Task
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.task.id,
            "title": self.task.title,
            "passed": self.passed,
            "points": self.task.points if self.passed else 0,
            "max_points": self.task.points,
            "checks": [c.as_dict() for c in self.checks],
        }


def report(
    scenario: str, student: str, backend: str, results: Sequence[TaskResult]
) -> dict[str, Any]:
    """The JSON-able report of one check run."""
    tasks = [r.as_dict() for r in results]
    return {
        "scenario": scenario,
        "student": student,
        "backend": backend,
        "checked_at": time.time(),
        "score": sum(t["points"] for t in tasks),
        "max_score": sum(t["max_points"] for t in tasks),
        "passed": all(t["passed"] for t in tasks),
        "tasks": tasks,
    }
