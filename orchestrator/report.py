"""What grading gives back, typed: a result per check, per task, and the report of a run.

`lab.check` returns a `Report`; it travels as one to every reader (the CLI's printers,
the gradebook, the dashboard, the state stores) and becomes JSON in one place,
`Report.to_dict` / `to_json`, read back with `Report.from_dict` / `from_json`. The keys
are the ones every guestlab has written, so reports stored by an older one still load.
JUnit of one report is written here too, through the one XML writer in `junit`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator import textsafe

if TYPE_CHECKING:
    from orchestrator.scenario.model import Task


#: the JUnit case of a task graded without the reboot it asks for, and why it fails
UNPROVEN_CASE = "survives a reboot"
UNPROVEN_TEXT = (
    "unproven: graded without a reboot (check --no-reboot); run `guestlab check` to prove it"
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        # name: what the check expects; message: what it found instead (when it failed)
        return {"name": self.name, "passed": self.passed, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(str(data["name"]), bool(data["passed"]), str(data.get("message", "")))


@dataclass
class TaskResult:
    """One task's checks; it passes when every check does, and then earns its points."""

    id: str
    title: str
    max_points: int
    checks: list[CheckResult] = field(default_factory=list)
    #: an `after_reboot` task graded without its reboot (`check --no-reboot`): not passed,
    #: whatever its checks say, since nothing proved the change survives a boot
    unproven: bool = False
    #: the tasks it requires that did not pass in the same check: "do them first"
    first: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, task: Task) -> TaskResult:
        return cls(task.id, task.title, task.points)

    @property
    def passed(self) -> bool:
        return not self.unproven and all(c.passed for c in self.checks)

    @property
    def points(self) -> int:
        return self.max_points if self.passed else 0

    @property
    def failing(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "passed": self.passed,
            "points": self.points,
            "max_points": self.max_points,
            "checks": [c.to_dict() for c in self.checks],
            "unproven": self.unproven,
            "first": list(self.first),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskResult:
        return cls(
            str(data["id"]),
            str(data.get("title", "")),
            int(data.get("max_points", data.get("points", 0))),
            [CheckResult.from_dict(c) for c in data.get("checks", [])],
            bool(data.get("unproven", False)),  # reports before reboots had none
            [str(t) for t in data.get("first") or []],
        )


@dataclass
class Report:
    """One check run of one lab: who, where, when, and each task's result."""

    scenario: str
    student: str
    backend: str
    tasks: list[TaskResult]
    checked_at: float = 0.0  # 0: a report that did not say (reads as "unknown")
    #: the machines restarted before grading (the `after_reboot` tasks'), in order
    rebooted: list[str] = field(default_factory=list)

    @classmethod
    def now(
        cls,
        scenario: str,
        student: str,
        backend: str,
        tasks: Sequence[TaskResult],
        rebooted: Sequence[str] = (),
    ) -> Report:
        """The report of a run that just finished."""
        return cls(scenario, student, backend, list(tasks), time.time(), list(rebooted))

    @property
    def score(self) -> int:
        return sum(t.points for t in self.tasks)

    @property
    def max_score(self) -> int:
        return sum(t.max_points for t in self.tasks)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tasks)

    def task(self, task_id: str) -> TaskResult | None:
        return next((t for t in self.tasks if t.id == task_id), None)

    # -- JSON: the one place a report becomes data, and back ------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "student": self.student,
            "backend": self.backend,
            "checked_at": self.checked_at,
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "tasks": [t.to_dict() for t in self.tasks],
            "rebooted": list(self.rebooted),
        }

    def to_json(self, *, indent: int | None = None, clean: bool = False) -> str:
        """The report as JSON; `clean`: strings made safe to show (what the CLI prints)."""
        data = self.to_dict()
        return json.dumps(textsafe.data(data) if clean else data, indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """A report as any guestlab stored it (score and passed are derived again)."""
        return cls(
            scenario=str(data.get("scenario", "")),
            student=str(data.get("student", "")),
            backend=str(data.get("backend", "")),
            tasks=[TaskResult.from_dict(t) for t in data.get("tasks", [])],
            checked_at=float(data.get("checked_at") or 0.0),
            rebooted=[str(m) for m in data.get("rebooted") or []],
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    # -- JUnit ----------------------------------------------------------------------------
    def to_junit(self) -> str:
        """One test suite, one test case per check (`check --format junit`)."""
        from orchestrator import junit  # here: ElementTree only for the JUnit form

        cases = [
            junit.outcome_case(t.id, c.name, c.passed, c.message)
            for t in self.tasks
            for c in t.checks
        ]
        cases += [  # visible as a failure: a CI run must not read it as passed
            junit.outcome_case(t.id, UNPROVEN_CASE, False, UNPROVEN_TEXT)
            for t in self.tasks
            if t.unproven
        ]
        suite = junit.Suite(
            name=f"guestlab.{self.scenario}",
            cases=cases,
            timestamp=dt.datetime.fromtimestamp(self.checked_at).isoformat(timespec="seconds"),
            properties=[("student", self.student)],
        )
        return junit.document([suite])


@dataclass(frozen=True)
class Attempt:
    """A recorded check: when it was taken, and its report."""

    at: float
    report: Report
