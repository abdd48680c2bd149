"""What the serve process knows: where the store is, the instructor's token, the limits,
and who holds a credential (the instructor's token, a student's cookie or bearer token)."""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import HTTPConnection

from orchestrator.web import access
from orchestrator.web.presence import Presence

#: the student's session cookie: the seat token itself, verified on every request
COOKIE = "guestlab_seat"
MAX_MESSAGE = 64 * 1024  # a terminal message larger than this closes the socket (1009)


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class ServeConfig:
    db_path: Path
    token: str = field(default_factory=new_token)  # the instructor's
    idle: float = 30 * 60  # seconds without a keystroke before a terminal closes
    max_terminals: int = 4  # open web terminals per student
    rate_interval: float = 2.0  # seconds between two checks (or hints) of one student
    log: Callable[[str], None] = lambda _line: None
    presence: Presence = field(default_factory=Presence)


def instructor_ok(conn: HTTPConnection, token: str) -> bool:
    """Whether a request carries the instructor's token, compared in constant time."""
    given = [conn.query_params.get("token", ""), conn.headers.get("x-guestlab-token", "")]
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    return any(g and hmac.compare_digest(g.encode(), token.encode()) for g in given)


def student_token(conn: HTTPConnection) -> str:
    """The seat token a request carries: `Authorization: Bearer`, else the cookie."""
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return conn.cookies.get(COOKIE, "")


def seat_of(db_path: Path, token: str) -> access.Seat | None:
    """The seat a token opens now (a rotated token or a removed lab opens nothing)."""
    if not token:
        return None
    try:
        db = access.read_only(db_path)
    except sqlite3.Error:
        return None
    try:
        return access.seat_for(db, token)
    except sqlite3.Error:  # no seats table yet: no lab was ever brought up
        return None
    finally:
        db.close()
