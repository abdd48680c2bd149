"""The page's language, and the seat's strings that its script shows.

The language is `?lang=`, else (a student's pages and terminals) the one their lab was
brought up in, else the browser's Accept-Language (in its order of preference), else
English. Pages and the CLI share one gettext catalog (orchestrator.messages); scenario
texts follow the same choice through `scenario.i18n.localize`. What a page's script shows
by itself comes from the page, as JSON in a `data-strings` attribute, never as English
written in the script. A string missing from a catalog stays in English.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from starlette.requests import HTTPConnection

from orchestrator import messages
from orchestrator.messages import _, ngettext
from orchestrator.scenario.i18n import DEFAULT, match
from orchestrator.web import access


def available() -> list[str]:
    return messages.available()


def script_strings(lang: str) -> dict[str, str]:
    """What seat.js shows by itself (statuses, notices), in `lang`."""
    with messages.language(lang):
        return {
            "checking": _("Checking…"),
            "reset_confirm": _(
                "Put every machine of this lab back to its starting state? Everything you"
                " changed in them is lost."
            ),
            "resetting": _("Resetting…"),
            "reset_done": _("The lab is back to its starting state."),
            "status_pass": _("passed"),
            "status_fail": _("not yet"),
            "status_unchecked": _("not checked yet"),
            "no_hints": _("This task has no hints."),
            # seat.js puts the numbers in
            "hint_n": _("Hint {n} of {total}"),
            "too_fast": _("Wait a moment before trying again."),
            "failed": _("It did not work:"),
            "terminal_closed": _("The terminal is closed."),
            "reconnect": _("Open again"),
            "found": _("found:"),
            "do_first": _("do {tasks} first"),
        }


def dashboard_strings(lang: str) -> dict[str, str]:
    """What dashboard.js shows by itself when it rebuilds the grid, in `lang`."""
    with messages.language(lang):
        return {
            # dashboard.js puts the number in
            "hint_one": ngettext("%(count)s hint", "%(count)s hints", 1) % {"count": "{n}"},
            "hint_many": ngettext("%(count)s hint", "%(count)s hints", 2) % {"count": "{n}"},
            "copy": _("copy?"),
            "updated": _("updated {time}"),
            "stale": _("cannot refresh: {error}"),
        }


def watch_strings(lang: str) -> dict[str, str]:
    """What watch.js shows by itself, in `lang`."""
    with messages.language(lang):
        return {
            "watching": _("watching"),
            "disconnected": _("disconnected (reload to watch again)"),
            "closed": _("(closed)"),
        }


def accepted(header: str) -> list[str]:
    """The tags of an Accept-Language header, most wanted first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, i, tag))
    return [tag for _q, _i, tag in sorted(ranked)]


def choose(query: str | None, accept_language: str | None) -> str:
    """The page's language: the query's if known, else the browser's first known one."""
    langs = available()
    if query:
        found = match(query, langs)
        if found:
            return found
    for tag in accepted(accept_language or ""):
        found = match(tag, langs)
        if found:
            return found
    return DEFAULT


def page_language(request: HTTPConnection) -> str:
    """The language a request asks for: `?lang=`, else its Accept-Language."""
    return choose(request.query_params.get("lang"), request.headers.get("accept-language"))


def seat_language(request: HTTPConnection, db_path: Path, seat: access.Seat) -> str:
    """A seat's language: `?lang=`, else the one its lab was brought up in (as the CLI
    speaks it), else the browser's."""
    if not request.query_params.get("lang"):
        try:
            db = access.read_only(db_path)
        except sqlite3.Error:
            return page_language(request)
        try:
            remembered = access.lab_language(db, seat.lab)
        finally:
            db.close()
        if remembered:
            return choose(remembered, None)
    return page_language(request)
