"""Who is connected now: every open terminal of the serve process, by lab and door.

One in-process registry that both doors write (the browser terminal, the SSH door) and
the instructor's grid reads. A session that ends, however it ends, leaves it in `finally`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Session:
    id: int
    lab: str  # the lab key
    machine: str
    door: str  # "web" or "ssh"
    since: float


class Presence:
    """The open sessions; safe to use from the event loop and from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open: dict[int, Session] = {}

    def enter(self, lab: str, machine: str, door: str) -> Session:
        with self._lock:
            session = Session(next(self._ids), lab, machine, door, time.time())
            self._open[session.id] = session
            return session

    def leave(self, session: Session) -> None:
        with self._lock:
            self._open.pop(session.id, None)

    def of(self, lab: str) -> list[Session]:
        """The lab's open sessions, oldest first."""
        with self._lock:
            return sorted((s for s in self._open.values() if s.lab == lab), key=lambda s: s.id)

    def count(self, lab: str, door: str | None = None) -> int:
        return sum(1 for s in self.of(lab) if door is None or s.door == door)

    def labs(self) -> set[str]:
        with self._lock:
            return {s.lab for s in self._open.values()}
