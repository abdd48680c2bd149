"""A student's credential: one secret per lab, opening that lab and nothing else.

A token is `SEAT.MAC`: SEAT is a random public id that names the lab's seat row, MAC is
an HMAC-SHA256 of SEAT and the seat's nonce under a key kept in its own file beside the
store (mode 0600). The store holds only SEAT and the nonce, so a read of the state store
alone does not reveal a token, and the instructor can still print a student's link again
(`class links`) without re-issuing it. Rotating draws a new SEAT and nonce: the old token
stops matching at once. Tokens are compared with `hmac.compare_digest` and never logged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

from orchestrator import paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS seats (
    lab TEXT PRIMARY KEY,          -- the lab key in labs
    seat TEXT NOT NULL UNIQUE,     -- public id, the token's first part
    nonce TEXT NOT NULL,           -- with the key file, derives the token's MAC
    created REAL NOT NULL
);
"""

#: the shape of a token: what `verify` accepts before it looks anything up
TOKEN_SHAPE = re.compile(r"^[a-z0-9]{10}\.[A-Za-z0-9_-]{32}$")
KEY_FILE = "seat.key"


def key_path() -> Path:
    return paths.home() / KEY_FILE


def load_key(path: Path | None = None) -> bytes:
    """The MAC key, made once (32 random bytes, 0600) the first time it is needed.

    Written whole to a private temporary file, then linked into place: a process that
    races us either wins the link or reads the winner's complete key, never a torn one.
    """
    path = path or key_path()
    if not path.exists():
        paths.ensure(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


def _mac(key: bytes, seat: str, nonce: str) -> str:
    digest = hmac.new(key, f"{seat}:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def _new_seat() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


class Seats:
    """The seats table on a connection to the state store (read-only is enough to verify)."""

    def __init__(self, db: sqlite3.Connection, key: bytes | None = None, create: bool = True):
        self.db = db
        self._key = key
        if create:
            db.executescript(SCHEMA)

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_key()
        return self._key

    def issue(self, lab: str) -> str:
        """The lab's token, made the first time it is asked for."""
        return self.token(lab) or self.rotate(lab)

    def token(self, lab: str) -> str | None:
        row = self.db.execute("SELECT seat, nonce FROM seats WHERE lab=?", (lab,)).fetchone()
        return f"{row[0]}.{_mac(self.key, row[0], row[1])}" if row else None

    def rotate(self, lab: str) -> str:
        """A new token for the lab; the old one stops working at once."""
        seat, nonce = _new_seat(), secrets.token_urlsafe(24)
        self.db.execute(
            "INSERT INTO seats (lab, seat, nonce, created) VALUES (?,?,?,?)"
            " ON CONFLICT(lab) DO UPDATE SET seat=excluded.seat, nonce=excluded.nonce,"
            " created=excluded.created",
            (lab, seat, nonce, time.time()),
        )
        return f"{seat}.{_mac(self.key, seat, nonce)}"

    def verify(self, token: str) -> str | None:
        """The lab a token opens, or None; the MAC is compared in constant time."""
        if not TOKEN_SHAPE.match(token or ""):
            return None
        seat, mac = token.split(".", 1)
        row = self.db.execute("SELECT lab, nonce FROM seats WHERE seat=?", (seat,)).fetchone()
        expected = _mac(self.key, seat, row[1]) if row else _mac(self.key, seat, "")
        # compared even when no row matched, so the time taken says nothing about the seat
        return row[0] if hmac.compare_digest(expected, mac) and row else None

    def forget(self, lab: str) -> None:
        self.db.execute("DELETE FROM seats WHERE lab=?", (lab,))
