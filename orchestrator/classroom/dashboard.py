"""`guestlab serve`: the instructor's live dashboard, on the standard library's HTTP server.

It only reads: every request opens the state database read-only, so the CLI keeps writing
meanwhile (WAL lets readers and one writer work side by side) and a dashboard bug cannot
damage the store. Every request needs the token printed at start, as `?token=`,
`Authorization: Bearer ...` or `X-Guestlab-Token`. Every string that comes from a roster
or a check is escaped: the page builds its grid with `textContent`, never `innerHTML`.
"""

from __future__ import annotations

import hmac
import html
import json
import re
import secrets
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.pages import (
    MAX_HISTORY,
    REFRESH_SECONDS,
    class_page,
    index_page,
    student_page,
    with_text,
)
from orchestrator.classroom.store import list_classes, student_history

#: the pages are `classroom.pages`; their names stay importable from here
__all__ = [
    "MAX_HISTORY",
    "REFRESH_SECONDS",
    "DashboardServer",
    "Handler",
    "class_ids",
    "class_page",
    "index_page",
    "log_safe",
    "new_token",
    "read_only",
    "student_page",
    "token_ok",
]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(expected: str, query: dict[str, list[str]], headers: Any) -> bool:
    """Whether a request carries the token, compared in constant time."""
    given = [*query.get("token", []), headers.get("X-Guestlab-Token", "")]
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    return any(g and hmac.compare_digest(g.encode(), expected.encode()) for g in given)


def read_only(db_path: Path) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(db_path))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


# -- the server --------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "guestlab"
    sys_version = ""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, HTTPStatus):
            code = code.value
        method = self.command or "-"
        path = (getattr(self, "path", "") or "-").split("?", 1)[0] if self.command else "-"
        self.server.log(f"{self.address_string()} {method} {path} {code} {size}")

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(format % args)

    def _send(self, status: int, body: str, ctype: str, nonce: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # the token travels in links: never in a Referer header to anywhere else
        self.send_header("Referrer-Policy", "no-referrer")
        src = f"'nonce-{nonce}'" if nonce else "'none'"
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; script-src {src}; style-src {src}; connect-src 'self';"
            " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text + "\n", "text/plain")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not token_ok(self.server.token, query, self.headers):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: the dashboard's token is needed")
            return
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        try:
            db = read_only(self.server.db_path)
        except sqlite3.Error as e:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"the state store cannot be read: {e}")
            return
        try:
            self._route(db, parts)
        except sqlite3.Error as e:  # a store being written right now: the next poll succeeds
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"the state store cannot be read: {e}")
        finally:
            db.close()

    def _route(self, db: sqlite3.Connection, parts: list[str]) -> None:
        token, nonce = self.server.token, secrets.token_urlsafe(12)
        if not parts:
            self._send(200, index_page(list_classes(db), token, nonce), "text/html", nonce)
        elif parts == ["api", "classes"]:
            body = [{"id": c.id, "status": c.status} for c in list_classes(db)]
            self._send(200, json.dumps(body), "application/json")
        elif len(parts) == 3 and parts[:2] == ["api", "class"]:
            book = gb.live(db, parts[2])
            if book is None:
                self._text(HTTPStatus.NOT_FOUND, "no such class")
            else:
                self._send(200, json.dumps(with_text(book)), "application/json")
        elif len(parts) == 2 and parts[0] == "class":
            book = gb.live(db, parts[1])
            if book is None:
                self._text(HTTPStatus.NOT_FOUND, "no such class")
            else:
                self._send(200, class_page(book, token, nonce), "text/html", nonce)
        elif len(parts) == 4 and parts[0] == "class" and parts[2] == "student":
            book = gb.live(db, parts[1])
            rows = [r for r in (book or {}).get("students", []) if r["student"] == parts[3]]
            if book is None or not rows:
                self._text(HTTPStatus.NOT_FOUND, "no such class or student")
            else:
                history = student_history(db, rows[0]["lab"])
                self._send(
                    200, student_page(book, rows[0], history, token, nonce), "text/html", nonce
                )
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        self._text(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard only reads")


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        db_path: Path,
        token: str,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.db_path = db_path
        self.token = token
        self._log = log
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def log(self, line: str) -> None:
        """Hand one access-log line on, without the token and with controls made visible."""
        self._log(log_safe(line, self.token))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"


def log_safe(line: str, token: str) -> str:
    """A log line that prints no token and no control character (request paths are
    whatever a client sent: a terminal escape in one must not reach the instructor's)."""
    line = _QUERY.sub(r"\1?…", line)  # query strings carry the token: none is logged
    for form in {token, urllib.parse.quote(token, safe=""), html.escape(token)}:
        if form:
            line = line.replace(form, "[token]")
    return "".join(
        c
        if c.isprintable() and not 0x80 <= ord(c) <= 0x9F
        else f"\\x{ord(c):02x}"
        if ord(c) < 0x100
        else f"\\u{ord(c):04x}"
        for c in line
    )


_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\"]*")


def class_ids(db_path: Path) -> list[str]:
    db = read_only(db_path)
    try:
        return [c.id for c in list_classes(db)]
    finally:
        db.close()
