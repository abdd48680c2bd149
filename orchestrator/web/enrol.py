"""Self-enrolment over HTTP: `/join/SECRET` shows a name field; posting a name enrols the
student (`classroom.enrol.join`), sets their seat cookie and sends them to `/seat`.

The form posts to the same origin only (the page's CSP allows that one form action). The
engine work of the claim runs in the thread pool.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator import messages
from orchestrator.classroom.enrol import EnrolRefused, join, opening_for
from orchestrator.errors import GuestlabError
from orchestrator.messages import _
from orchestrator.web import access
from orchestrator.web.config import COOKIE, ServeConfig
from orchestrator.web.i18n import page_language
from orchestrator.web.rendering import page, with_headers

MAX_FORM = 4096


def _form_page(
    request: Request, secret: str, status: int = 200, error: str = "", name: str = ""
) -> Response:
    lang = page_language(request)
    response = page("join.html", status, lang=lang, secret=secret, error=error, typed=name)
    policy = response.headers["content-security-policy"]
    response.headers["content-security-policy"] = policy.replace(
        "form-action 'none'", "form-action 'self'"
    )
    return response


def _closed(request: Request) -> Response:
    lang = page_language(request)
    with messages.language(lang):
        return page("message.html", 403, lang=lang, message=_("This class link is not open."))


def routes(config: ServeConfig) -> list[Route]:
    def is_open(secret: str) -> bool:
        db = access.read_only(config.db_path)
        try:
            return opening_for(db, secret) is not None
        finally:
            db.close()

    async def form(request: Request) -> Response:
        secret = request.path_params["secret"]
        if not await run_in_threadpool(is_open, secret):
            return _closed(request)
        return _form_page(request, secret)

    async def enrol(request: Request) -> Response:
        secret = request.path_params["secret"]
        if not await run_in_threadpool(is_open, secret):
            return _closed(request)
        body = (await request.body())[:MAX_FORM].decode("utf-8", "replace")
        fields = parse_qs(body)
        student = (fields.get("student") or [""])[0].strip()
        try:
            token = await run_in_threadpool(join, config.db_path, secret, student, student)
        except EnrolRefused as e:
            return _form_page(request, secret, 400, str(e), student)
        except GuestlabError as e:
            config.log(f"enrolment failed: {e}")
            with messages.language(page_language(request)):
                error = _("No lab could be made now: {error}").format(error=e)
            return _form_page(request, secret, 503, error, student)
        config.log(f"enrolled {student}")
        response = RedirectResponse("/seat", status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/"
        )
        return with_headers(response)

    return [
        Route("/join/{secret}", form, methods=["GET"]),
        Route("/join/{secret}", enrol, methods=["POST"]),
    ]
