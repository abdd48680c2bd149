"""The instructor's pages: the classes, a class's live grid, one student's checks, and a
read-only view of a student's open terminals.

Every request needs the instructor's token (`?token=`, `Authorization: Bearer` or
`X-Guestlab-Token`); a student's token opens none of this. The handlers only read: each
opens the state store read-only (WAL lets every command write meanwhile). They are plain
functions, so Starlette runs them in its thread pool and a slow store holds up no one.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import messages
from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.copies import describe, is_copy
from orchestrator.classroom.store import list_classes, student_history
from orchestrator.messages import N_, _
from orchestrator.web import access
from orchestrator.web.config import ServeConfig, instructor_ok
from orchestrator.web.i18n import dashboard_strings, page_language, watch_strings
from orchestrator.web.rendering import data, page, text

REFRESH_SECONDS = 3
MAX_HISTORY = 50
FORBIDDEN = N_("403 forbidden: the dashboard's token is needed")
UNREADABLE = N_("the state store cannot be read: {error}")
NO_CLASS = N_("no such class")
NO_STUDENT = N_("no such class or student")


def with_text(book: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    """The JSON the grid reads: copy flags come with their sentence ready to show, in the
    page's language."""
    with messages.language(lang):
        for r in book["students"]:
            r["copies"] = [{**f, "text": describe(f)} for f in r["copies"]]
    return book


def with_presence(book: dict[str, Any], config: ServeConfig) -> dict[str, Any]:
    """Each student's open terminals now (machine and door), for the grid's column."""
    for r in book["students"]:
        r["connected"] = [
            {"machine": s.machine, "door": s.door, "since": s.since}
            for s in config.presence.of(r["lab"])
        ]
    return book


def _cell(c: dict[str, Any]) -> str:
    return "·" if c["state"] == gb.UNCHECKED else f"{c['points']}/{c['max_points']}"


def _note(flag: dict[str, Any]) -> str:
    """A copy column's entry as a page shows it (rendered in the page's language)."""
    return (_("copy?") + " " if is_copy(flag) else "") + describe(flag)


def _link(path: str, token: str) -> str:
    return f"{path}?token={urllib.parse.quote(token)}"


def _handler(config: ServeConfig, build: Any) -> Any:
    """A read-only endpoint: the token checked, the store opened for this request only."""

    def endpoint(request: Request) -> Response:
        lang = page_language(request)
        if not instructor_ok(request, config.token):
            return text(403, FORBIDDEN, lang)
        try:
            db = access.read_only(config.db_path)
        except sqlite3.Error as e:
            return text(503, UNREADABLE, lang, error=e)
        try:
            return build(config, request, db)
        except sqlite3.Error as e:  # a store being written right now: the next poll succeeds
            return text(503, UNREADABLE, lang, error=e)
        finally:
            db.close()

    return endpoint


def index(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    classes = [
        (c, _link(f"/class/{urllib.parse.quote(c.id)}", config.token)) for c in list_classes(db)
    ]
    return page("index.html", lang=page_language(request), classes=classes)


def api_classes(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    return data([{"id": c.id, "status": c.status} for c in list_classes(db)])


def api_class(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    book = gb.live(db, request.path_params["cid"])
    if book is None:
        return text(404, NO_CLASS, page_language(request))
    return data(with_presence(with_text(book, page_language(request)), config))


def klass(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    cid = request.path_params["cid"]
    lang = page_language(request)
    book = gb.live(db, cid)
    if book is None:
        return text(404, NO_CLASS, lang)
    with_presence(book, config)
    return page(
        "class.html",
        lang=lang,
        strings_json=json.dumps(dashboard_strings(lang)),
        book=book,
        token=config.token,
        base=f"/class/{urllib.parse.quote(cid)}",
        api=f"/api/class/{urllib.parse.quote(cid)}",
        refresh=REFRESH_SECONDS,
        cell=_cell,
        note=_note,
        time_of=lambda at: gb.iso(at)[11:19] or "-",
        link=lambda path: _link(path, config.token),
        quote=urllib.parse.quote,
    )


def _row(db: sqlite3.Connection, request: Request) -> tuple[Any, Any]:
    """The class's live gradebook and the student's row in it, or (None, None)."""
    book = gb.live(db, request.path_params["cid"])
    rows = [
        r for r in (book or {}).get("students", []) if r["student"] == request.path_params["sid"]
    ]
    return (book, rows[0]) if book is not None and rows else (None, None)


def student(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    book, row = _row(db, request)
    if book is None:
        return text(404, NO_STUDENT, page_language(request))
    history = list(reversed(student_history(db, row["lab"])[-MAX_HISTORY:]))
    base = f"/class/{urllib.parse.quote(book['class'])}"
    return page(
        "student.html",
        lang=page_language(request),
        book=book,
        r=row,
        history=history,
        titles={t["id"]: t["title"] for t in book["tasks"]},
        cell=_cell,
        note=_note,
        iso=gb.iso,
        class_link=_link(base, config.token),
        watch_link=_link(
            f"{base}/student/{urllib.parse.quote(row['student'])}/watch", config.token
        ),
        connected=config.presence.of(row["lab"]),
    )


def watch(config: ServeConfig, request: Request, db: sqlite3.Connection) -> Response:
    book, row = _row(db, request)
    lang = page_language(request)
    if book is None:
        return text(404, NO_STUDENT, lang)
    return page(
        "watch.html",
        lang=lang,
        strings_json=json.dumps(watch_strings(lang)),
        r=row,
        cid=book["class"],
        token=config.token,
        socket=f"/watch/{urllib.parse.quote(row['lab'])}",
        class_link=_link(f"/class/{urllib.parse.quote(book['class'])}", config.token),
    )


def routes(config: ServeConfig) -> list[Route]:
    read = ["GET", "HEAD"]
    return [
        Route("/", _handler(config, index), methods=read),
        Route("/api/classes", _handler(config, api_classes), methods=read),
        Route("/api/class/{cid}", _handler(config, api_class), methods=read),
        Route("/class/{cid}", _handler(config, klass), methods=read),
        Route("/class/{cid}/student/{sid}", _handler(config, student), methods=read),
        Route("/class/{cid}/student/{sid}/watch", _handler(config, watch), methods=read),
    ]
