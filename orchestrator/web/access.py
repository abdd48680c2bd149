"""What a student's token opens: one lab, its machines, and a shell in each of them.

Both doors (the browser terminal and the SSH door) ask here, so that the rule "a
credential opens its lab and nothing else" is written once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.contract import Attachable
from orchestrator.credentials import Seats
from orchestrator.errors import GuestlabError
from orchestrator.messages import _

if TYPE_CHECKING:
    from orchestrator.lab.bound import Lab


class SeatRefused(GuestlabError):
    """The credential does not open what was asked for; nothing ran."""


@dataclass(frozen=True)
class Seat:
    """A lab as its student reaches it."""

    lab: str  # the lab key
    scenario: str
    student: str


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that can verify tokens and read labs, never write."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def seat_for(db: sqlite3.Connection, token: str) -> Seat | None:
    """The seat a token opens, or None (bad token, rotated, or lab gone)."""
    lab = Seats(db, create=False).verify(token)
    if lab is None:
        return None
    row = db.execute("SELECT scenario, student FROM labs WHERE key=?", (lab,)).fetchone()
    return Seat(lab, row["scenario"], row["student"]) if row else None


def lab_language(db: sqlite3.Connection, lab: str) -> str:
    """The language a lab was brought up in; "" when none was chosen (or the store is from
    before languages were remembered, or the lab is gone)."""
    try:
        row = db.execute("SELECT lang FROM labs WHERE key=?", (lab,)).fetchone()
    except sqlite3.Error:
        return ""
    return str(row[0]) if row and row[0] else ""


def machine_names(lab: Lab) -> list[str]:
    """The machines a student may open in a lab, in the scenario's order."""
    return [m.name for m in lab.scenario.lab_machines]


def shell_argv(lab: Lab, machine: str) -> list[str]:
    """The host command that opens a root shell in `machine`; refused for any other lab's."""
    _require(lab, machine)
    return list(lab.backend_for(machine).shell_argv(lab.ref, machine))


def attach_argv(lab: Lab, machine: str, argv: Sequence[str], *, tty: bool) -> list[str]:
    """The host command that runs argv as root in `machine`, on the caller's streams
    (`tty`: under its terminal); refused for any other lab's machine."""
    _require(lab, machine)
    backend = lab.backend_for(machine)
    if not isinstance(backend, Attachable):
        raise SeatRefused(
            _("the {backend} backend cannot run a command for a door").format(backend=backend.name)
        )
    return list(backend.attach_argv(lab.ref, machine, argv, tty=tty))


def _require(lab: Lab, machine: str) -> None:
    names = machine_names(lab)
    if machine not in names:
        raise SeatRefused(
            _("this lab has no machine {machine}").format(machine=machine),
            hint=_("its machines: {names}").format(names=", ".join(names)),
        )
