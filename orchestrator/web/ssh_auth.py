"""Who an SSH login is: the user name's grammar, the lab it names, and the two proofs.

A user name is `NAME[+MACHINE]`. NAME is a student id (`alice`) or a lab key
(`machine-id-clone--alice`, as `guestlab status` shows it); MACHINE, one of the lab's
machines (the first one when left out). A student id alone names every lab of that
student: the token given as the password names one of them, so `alice` is enough with a
password; a key from several classes' rosters opens several, and the door then lists the
lab keys to log in with. Neither `+` nor `--` may appear in a scenario id or a machine
name, so the grammar never needs to guess.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from orchestrator.backends.contract import LabRef
from orchestrator.messages import _
from orchestrator.web.access import Seat, lab_language, seat_for

#: a student id, or a lab key (`SCENARIO--STUDENT`, longer than a student id may be)
LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MACHINE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
HOST_KEY_FILE = "ssh_door_host_key"


@dataclass(frozen=True)
class Login:
    """What an SSH user name asks for."""

    name: str  # a student id or a lab key
    machine: str | None  # None: the lab's first machine


def parse_username(username: str) -> Login:
    """The login a user name asks for; ValueError, with the grammar, when it is not one."""
    name, plus, machine = username.partition("+")
    if not LAB_NAME.match(name) or (plus and not MACHINE.match(machine)):
        raise ValueError(
            _(
                "{name} is not a lab's user name: use STUDENT, STUDENT+MACHINE,"
                " SCENARIO--STUDENT or SCENARIO--STUDENT+MACHINE"
            ).format(name=repr(username[:100]))
        )
    return Login(name, machine if plus else None)


def labs_named(db: sqlite3.Connection, name: str) -> list[Seat]:
    """The labs `name` names: the lab whose key it is, or every lab of that student id."""
    rows = db.execute("SELECT key, scenario, student FROM labs ORDER BY key").fetchall()
    return [
        Seat(key, scenario, student)
        for key, scenario, student in rows
        if key == name or LabRef(scenario, name).key == key
    ]


def seat_by_token(db: sqlite3.Connection, name: str, token: str) -> Seat | None:
    """The lab the token opens, if `name` names it; None for anyone else's token."""
    seat = seat_for(db, token)  # verified in constant time, whatever the name
    if seat is None or seat.lab not in {s.lab for s in labs_named(db, name)}:
        return None
    return seat


def seats_language(db: sqlite3.Connection, seats: list[Seat]) -> str:
    """The language the seats' labs were brought up in, when they agree; else ""."""
    found = {lab_language(db, s.lab) for s in seats}
    return found.pop() if len(found) == 1 else ""


def roster_key(text: str) -> asyncssh.SSHKey:
    """A roster's `ssh_key` cell as a public key; ValueError saying why it is not one."""
    try:
        return asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ValueError(_("not an SSH public key ({error})").format(error=e)) from None


def seats_by_key(db: sqlite3.Connection, name: str, key: asyncssh.SSHKey) -> list[Seat]:
    """The labs `name` names whose roster line carries this public key."""
    named = {s.lab: s for s in labs_named(db, name)}
    if not named:
        return []
    marks = ",".join("?" * len(named))
    try:
        rows = db.execute(
            f"SELECT lab, ssh_key FROM class_members WHERE ssh_key != '' AND lab IN ({marks})",
            tuple(named),
        ).fetchall()
    except sqlite3.OperationalError:  # no class yet, or a store from before the column
        return []
    found = []
    for lab, text in rows:
        with contextlib.suppress(ValueError):
            if roster_key(text).public_data == key.public_data:
                found.append(named[lab])
    return sorted(set(found), key=lambda s: s.lab)


def host_key(home: Path) -> asyncssh.SSHKey:
    """The door's host key, made once (Ed25519, mode 0600) so clients can pin it."""
    path = home / HOST_KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        data = asyncssh.generate_private_key("ssh-ed25519").export_private_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another serve process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    return asyncssh.read_private_key(path)


class Attempts:
    """Failed logins per client address in a sliding window: a guessing client is stopped."""

    def __init__(self, limit: int = 20, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failed: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        times = self._failed.setdefault(address, deque())
        while times and times[0] < time.monotonic() - self.window:
            times.popleft()
        if not times:
            del self._failed[address]
        return times

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self._recent(address)
        self._failed.setdefault(address, deque()).append(time.monotonic())
