"""The student's side over HTTP: the link that becomes a session, the seat page, the API.

A link is `/s/TOKEN`: the token becomes an HttpOnly, SameSite=Strict cookie (the cookie's
value is the token itself, verified on every request) and the browser is sent on to
`/seat`, so the token leaves the address bar and history. Scripts use the same API with
`Authorization: Bearer TOKEN`. A token opens its own lab only: the lab is taken from the
token, never from the request. Engine work (open, check, hint, reset) runs in the thread
pool, so one slow lab holds up nobody else.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator import messages
from orchestrator.errors import GuestlabError, UsageError
from orchestrator.lab import Lab, Silent, open_lab
from orchestrator.lab import check as check_lab
from orchestrator.lab import hint as hint_lab
from orchestrator.lab import reset as reset_lab
from orchestrator.messages import N_, _
from orchestrator.report import Report
from orchestrator.state import LabRecord, Store
from orchestrator.web import access, i18n
from orchestrator.web.config import COOKIE, ServeConfig, seat_of, student_token
from orchestrator.web.rendering import data, markdown, page, with_headers
from orchestrator.web.static_files import vendor_ready

NO_SESSION = N_("This page needs your personal link. Open the link your instructor gave you again.")
NO_TOKEN = N_("a student's link or token is needed")


class RateLimit:
    """At most one action of a kind per student per `interval` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def allow(self, lab: str, verb: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get((lab, verb), -1e9) < self.interval:
                return False
            self._last[(lab, verb)] = now
            return True


def _state(report: Report | None, task_id: str) -> tuple[str, int, list[dict[str, str]], list[str]]:
    """A task's state, points, failed checks (what each expects, what it found) and the
    tasks to do first."""
    found = report.task(task_id) if report else None
    if found is None:
        return "unchecked", 0, [], []
    failing = [{"expected": c.name, "found": c.message} for c in found.failing]
    return ("pass" if found.passed else "fail"), found.points, failing, found.first


def describe_seat(db_path: Any, seat: access.Seat, lang: str) -> dict[str, Any]:
    """What the page and `/api/me` show: texts rendered, each task's latest state."""
    store = Store(db_path)
    try:
        with messages.language(lang):
            lab, _record = open_lab(store, seat.scenario, seat.student, lang)
        attempts = store.attempts(seat.lab)
        last = attempts[-1].report if attempts else None
        tasks = []
        for task in lab.scenario.tasks:
            state, earned, failing, first = _state(last, task.id)
            tasks.append(
                {
                    "id": task.id,
                    "title": task.title,
                    "points": task.points,
                    "earned": earned,
                    "state": state,
                    "messages": failing,
                    "first": first,
                    "instructions_html": markdown(task.instructions),
                    "hints_taken": store.hints_taken(seat.lab, task.id),
                }
            )
        return {
            "scenario": seat.scenario,
            "student": seat.student,
            "lang": lang,
            "title": lab.scenario.metadata.title,
            "description_html": markdown(lab.scenario.description),
            "machines": access.machine_names(lab),
            "score": sum(t["earned"] for t in tasks),
            "max_score": sum(t["points"] for t in tasks),
            "tasks": tasks,
        }
    finally:
        store.close()


def _lang(request: Request) -> str:
    return i18n.page_language(request)


def _failure(e: GuestlabError, status: int = 409) -> Response:
    return data({"error": str(e), "hint": e.hint}, status)


def _refused(lang: str, status: int, english: str) -> Response:
    """An API refusal in the page's language (`english` is a catalog msgid)."""
    with messages.language(lang):
        return data({"error": _(english)}, status)


class Endpoints:
    """The seat's HTTP endpoints, sharing the config and the rate limit."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.limit = RateLimit(config.rate_interval)

    def seat(self, request: Request) -> access.Seat | None:
        return seat_of(self.config.db_path, student_token(request))

    def seat_and_lang(self, request: Request) -> tuple[access.Seat | None, str]:
        found = self.seat(request)
        lang = i18n.seat_language(request, self.config.db_path, found) if found else _lang(request)
        return found, lang

    def link(self, request: Request) -> Response:
        token = request.path_params["token"]
        if seat_of(self.config.db_path, token) is None:
            self.config.log("refused: a seat link that opens no lab")
            lang = _lang(request)
            with messages.language(lang):
                return page("message.html", 403, lang=lang, message=_(NO_SESSION))
        lang = request.query_params.get("lang")
        target = "/seat" + (f"?lang={i18n.choose(lang, None)}" if lang else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return with_headers(response)

    def seat_page(self, request: Request) -> Response:
        found, lang = self.seat_and_lang(request)
        if found is None:
            # A Strict cookie is withheld on a navigation another site started (a link in
            # a mail): the page reloads itself once, as a same-site request that sends it.
            cross = request.headers.get("sec-fetch-site") == "cross-site"
            reload = cross and COOKIE not in request.cookies
            with messages.language(lang):
                message = _("Opening your lab…") if reload else _(NO_SESSION)
            status = 200 if reload else 403
            return page("message.html", status, lang=lang, message=message, reload=reload)
        try:
            seen = describe_seat(self.config.db_path, found, lang)
        except GuestlabError as e:
            return page("message.html", 409, lang=lang, message=str(e))
        return page(
            "seat.html",
            strings_json=json.dumps(i18n.script_strings(lang)),
            languages=i18n.available(),
            vendor_ok=vendor_ready(),
            **seen,
        )

    async def me(self, request: Request) -> Response:
        found, lang = await run_in_threadpool(self.seat_and_lang, request)
        if found is None:
            return _refused(lang, 403, NO_TOKEN)
        try:
            seen = await run_in_threadpool(describe_seat, self.config.db_path, found, lang)
        except GuestlabError as e:
            return _failure(e)
        return data(seen)

    async def act(self, request: Request, verb: str) -> Response:
        """Check, hint or reset: the student's own lab, once per interval, off the loop."""
        found, lang = await run_in_threadpool(self.seat_and_lang, request)
        if found is None:
            self.config.log(f"refused: {verb} without a student's token")
            return _refused(lang, 403, NO_TOKEN)
        body: dict[str, Any] = {}
        if verb == "hint":
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                body = {}
            if not isinstance(body, dict) or not isinstance(body.get("task"), str):
                return data({"error": 'send {"task": ID}'}, 400)  # for scripts: not translated
        if not self.limit.allow(found.lab, verb):
            with messages.language(lang):
                too_fast = _("at most one every 2 seconds")
            return data({"error": too_fast}, 429, {"Retry-After": "2"})
        try:
            result = await run_in_threadpool(VERBS[verb], self.config, found, lang, body)
        except UsageError as e:
            return _failure(e, 400)
        except GuestlabError as e:
            return _failure(e)
        except OSError as e:  # the engine's socket failed (stopped, timed out): a sentence
            self.config.log(
                f"{verb} of {found.lab}: the engine did not answer ({type(e).__name__})"
            )
            with messages.language(lang):
                error = _("the lab's engine did not answer ({error}); try again shortly").format(
                    error=type(e).__name__
                )
                hint = _("ask your instructor if it goes on")
            return data({"error": error, "hint": hint}, 503)
        return data(result)

    async def check(self, request: Request) -> Response:
        return await self.act(request, "check")

    async def hint(self, request: Request) -> Response:
        return await self.act(request, "hint")

    async def reset(self, request: Request) -> Response:
        return await self.act(request, "reset")


def routes(config: ServeConfig) -> list[Route]:
    seat = Endpoints(config)
    return [
        Route("/s/{token}", seat.link, methods=["GET"]),
        Route("/seat", seat.seat_page, methods=["GET", "HEAD"]),
        Route("/api/me", seat.me, methods=["GET"]),
        Route("/api/check", seat.check, methods=["POST"]),
        Route("/api/hint", seat.hint, methods=["POST"]),
        Route("/api/reset", seat.reset, methods=["POST"]),
    ]


@contextlib.contextmanager
def _opened(
    config: ServeConfig, seat: access.Seat, lang: str
) -> Iterator[tuple[Lab, LabRecord, Store]]:
    """The seat's lab as `guestlab` opens it, on a store of its own (one per worker thread)."""
    store = Store(config.db_path)
    try:
        with messages.language(lang):  # errors raised in here are in the page's language
            lab, record = open_lab(store, seat.scenario, seat.student, lang)
            yield lab, record, store
    finally:
        store.close()


def _do_check(config: ServeConfig, seat: access.Seat, lang: str, body: Any) -> Any:
    """The same grading as `guestlab check`, recorded as the student's own attempt."""
    with _opened(config, seat, lang) as (lab, record, store):
        return check_lab(lab, record, store).to_dict()


def _do_hint(config: ServeConfig, seat: access.Seat, lang: str, body: Any) -> Any:
    with _opened(config, seat, lang) as (lab, _record, store):
        n, total, hint_text = hint_lab(lab, store, body["task"])
    html = markdown(hint_text) if hint_text else ""
    return {"task": body["task"], "n": n, "total": total, "text": hint_text, "html": html}


def _do_reset(config: ServeConfig, seat: access.Seat, lang: str, body: Any) -> Any:
    with _opened(config, seat, lang) as (lab, record, store):
        reset_lab(lab, record, store, Silent())
    return {"reset": True}


VERBS = {"check": _do_check, "hint": _do_hint, "reset": _do_reset}
