"""The serve process's ASGI app: the instructor's dashboard, the students' seats (pages,
API, terminals), static files; one access log that never shows a token.

    build_app(ServeConfig(db_path=...))  ->  Starlette

An unknown path answers 403 to whoever has no credential (the instructor's old
behaviour: nothing about the server is told before the token) and 404 otherwise.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.messages import N_
from orchestrator.web import dashboard, enrol, seats, static_files, terminals
from orchestrator.web.config import ServeConfig, instructor_ok, seat_of, student_token
from orchestrator.web.i18n import page_language
from orchestrator.web.rendering import log_safe, text

#: what the other errors Starlette raises (a wrong method, mostly) say, by status
REASONS = {405: N_("405 method not allowed")}


class AccessLog:
    """`client METHOD path status ms`, through the config's log, secrets removed."""

    def __init__(self, app: ASGIApp, config: ServeConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start, status = time.monotonic(), [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "websocket.accept":
                status[0] = 101
            elif message["type"] == "websocket.close" and not status[0]:
                status[0] = 403
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = (scope.get("client") or ("-", 0))[0]
            method = scope.get("method", "WS")
            ms = round((time.monotonic() - start) * 1000)
            line = f"{client} {method} {scope.get('path', '-')} {status[0] or '-'} {ms}ms"
            self.config.log(log_safe(line, self.config.token))


def build_app(config: ServeConfig) -> Starlette:
    open_terminals = terminals.Terminals()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await open_terminals.close_all()  # Ctrl-C: every shell ends with the server

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        lang = page_language(request)
        if status == 404 and not instructor_ok(request, config.token):
            seat = await run_in_threadpool(seat_of, config.db_path, student_token(request))
            if seat is None:
                return text(403, dashboard.FORBIDDEN, lang)
        if status == 404:
            return text(404, static_files.NOT_FOUND, lang)
        detail = f"{status} {getattr(exc, 'detail', '')}".lower()
        return text(status, REASONS.get(status, detail), lang)

    routes: list[Any] = [
        *dashboard.routes(config),
        *seats.routes(config),
        *enrol.routes(config),
        *terminals.routes(config, open_terminals),
        *static_files.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found},
    )
    app.state.terminals = open_terminals
    app.add_middleware(AccessLog, config=config)
    return app
