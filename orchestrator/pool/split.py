"""Which part of `up` can happen before a student is known.

A pool lab runs the setup steps up to the first whose text uses `params` or `student`,
and saves its originals' starting state there, before any student step; the claim runs
that step and every later one, in order (a later step may build on it), then the clones
(a clone is a copy of its source as the student's steps left it, so it cannot be made
earlier). `reset` of a claimed lab restores the saved state and runs the same steps and
clones again. Where an engine cannot remove a single clone, the pool saves nothing early
and the claim takes the snapshot after the clones, as `up` does. A scenario whose setup
never names the student is handed over complete: the claim does no engine work at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import UsageError
from orchestrator.lab.bound import Lab
from orchestrator.lab.bring_up import can_remake_clones
from orchestrator.messages import _
from orchestrator.scenario import cache
from orchestrator.scenario.params import has_template

if TYPE_CHECKING:
    from orchestrator.scenario.model import Scenario

STUDENT_WORDS = re.compile(r"\b(params|student)\b")
#: what a claim runs when the setup names the student and nothing was saved early
AFTER_STUDENT = ("setup", "clone", "snapshot")
#: what a pool lab runs when its starting state is saved before the student's steps
BEFORE_STUDENT = ("image", "provision", "setup", "snapshot")


@dataclass(frozen=True)
class Split:
    first: int  # the first setup step that names the student (len(setup): none does)
    early: bool  # the starting state is saved before it: a claim runs steps and clones only
    whole: bool  # no step names the student: a claim runs nothing

    def claim_phases(self, lab: Lab) -> tuple[str, ...]:
        if self.whole:
            return ()
        if self.early:
            return ("setup", "clone") if lab.clones else ("setup",)
        return AFTER_STUDENT


def split(lab: Lab) -> Split:
    """Where a lab of this scenario is cut between its pool and its student."""
    # the file as written (no language, no rendering), from the scenario cache: a claim
    # then loads no pydantic
    first = first_student_step(cache.localized(lab.path, "")[0])
    whole = first == len(lab.scenario.setup)
    return Split(first, not whole and can_remake_clones(lab), whole)


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
    """Refuse a scenario whose machines themselves depend on the student (grading machines
    may: each check makes them, for the student whose lab it grades)."""
    from orchestrator.scenario.model_base import dump

    machines = [m.name for m in raw.lab_machines if uses_student(json.dumps(dump(m)))]
    if machines:
        raise UsageError(
            _("{id} cannot be pooled: machine {machines} depends on the student").format(
                id=raw.id, machines=machines[0]
            ),
            hint=_("bring its labs up cold: guestlab up ID --no-pool"),
        )
    # a pool saves the starting state before the student's steps: a copy of that state
    # would lack them (running them again in the copy gives other keys, other IDs)
    late = {step.machine for step in raw.setup[first_student_step(raw) :]}
    for m in raw.grading_machines:
        source = raw.root_of(m.name).name
        if m.grading and m.grading.state == "start" and source in late:
            raise UsageError(
                _(
                    "{id} cannot be pooled: grading machine {name} copies {source} as"
                    " `up` left it, after setup steps that depend on the student"
                ).format(id=raw.id, name=m.name, source=source),
                hint=_("bring its labs up cold: guestlab up ID --no-pool"),
            )


def digest(path: Path) -> str:
    """The scenario file's content, so that a pool made from an older file is not used."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
