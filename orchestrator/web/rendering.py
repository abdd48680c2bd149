"""What every page of the serve process shares: templates, Markdown, headers, safe logs.

Pages are Jinja2 template files with autoescape on; Markdown from a scenario is rendered
with raw HTML disabled, so an author's or a student's `<script>` stays text. Templates
speak the page's language through gettext (`{% trans %}`, `_()`: jinja2.ext.i18n), from
the same catalog as the CLI (orchestrator.messages), chosen per request. Every HTML
response carries a Content-Security-Policy with a fresh nonce: only our own scripts run.
"""

from __future__ import annotations

import html
import re
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from orchestrator import messages
from orchestrator.messages import _

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# each render passes the request's language's `gettext` in its context, which shadows these
_env.install_null_translations()  # type: ignore[attr-defined]
#: CommonMark without raw HTML: a scenario's text can format, never inject
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(text: str) -> str:
    """Safe HTML of a Markdown text (raw HTML escaped, `javascript:` links refused)."""
    return _markdown.render(text or "")


BASE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # tokens travel in links: never in a Referer header to anywhere else
    "Referrer-Policy": "no-referrer",
}


def csp(nonce: str) -> str:
    src = f"'nonce-{nonce}'" if nonce else "'none'"
    return (
        f"default-src 'none'; script-src {src}; style-src {src}; connect-src 'self';"
        " img-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    )


def page(name: str, status: int = 200, *, lang: str = "en", **context: Any) -> HTMLResponse:
    """A template rendered in `lang` with a fresh nonce, sent with the strict headers."""
    nonce = secrets.token_urlsafe(12)
    with messages.language(lang):
        body = _env.get_template(name).render(
            nonce=nonce,
            lang=lang,
            gettext=messages._,
            ngettext=messages.ngettext,
            _=messages._,
            **context,
        )
    headers = {**BASE_HEADERS, "Content-Security-Policy": csp(nonce)}
    return HTMLResponse(body, status_code=status, headers=headers)


def text(status: int, message: str, lang: str = "en", **values: Any) -> PlainTextResponse:
    """A plain-text answer: `message` (a msgid) in `lang`, its `{placeholders}` filled."""
    with messages.language(lang):
        body = _(message).format(**values) if values else _(message)
    headers = {**BASE_HEADERS, "Content-Security-Policy": csp("")}
    return PlainTextResponse(body + "\n", status_code=status, headers=headers)


def data(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**BASE_HEADERS, **(headers or {})})


def with_headers(response: Response) -> Response:
    response.headers.update(BASE_HEADERS)
    return response


_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\"]*")
_SEAT_LINK = re.compile(r"/s/[^\s/?'\"]+")


def log_safe(line: str, *secrets_: str) -> str:
    """A log line with no token and no control character: request paths are whatever a
    client sent, and a terminal escape in one must not reach the instructor's terminal."""
    line = _QUERY.sub(r"\1?…", line)  # query strings carry tokens: none is logged
    line = _SEAT_LINK.sub("/s/[token]", line)  # so do students' links
    for secret in secrets_:
        for form in {secret, urllib.parse.quote(secret, safe=""), html.escape(secret)}:
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
