"""Which part of `up` can happen before a student is known.

A pool lab runs the setup steps up to the first whose text uses `params` or `student`;
the claim runs that step and every later one, in order (a later step may build on it),
then the clones and the starting-state snapshot. A scenario whose setup never names the
student is handed over complete: the claim does no engine work at all.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.render import has_template

STUDENT_WORDS = re.compile(r"\b(params|student)\b")
#: what a claim runs when the setup names the student, after the student's own steps
AFTER_STUDENT = ("setup", "clone", "snapshot")


def uses_student(text: str) -> bool:
    """Whether a template in `text` may read the student or their parameters."""
    return has_template(text) and bool(STUDENT_WORDS.search(text))


def first_student_step(raw: Scenario) -> int:
    """The index of the first setup step that depends on the student (len when none does)."""
    for n, step in enumerate(raw.setup):
        if uses_student(step.run) or uses_student(step.machine):
            return n
    return len(raw.setup)


def require_poolable(raw: Scenario) -> None:
    """Refuse a scenario whose machines themselves depend on the student."""
    machines = [m.name for m in raw.machines if uses_student(m.model_dump_json())]
    if machines:
        raise UsageError(
            f"{raw.id} cannot be pooled: machine {machines[0]} depends on the student",
            hint="bring its labs up cold: guestlab up ID --no-pool",
        )


def digest(path: Path) -> str:
    """The scenario file's content, so that a pool made from an older file is not used."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
