"""`guestlab class links` and `guestlab link`: each student's personal seat link.

A link is BASE_URL/s/TOKEN: opening it gives the student their own lab in the browser
(page, terminals, Check) through `guestlab serve`, and nothing else. Tokens are derived
from a key kept beside the state store, so printing them again is safe and changes
nothing; `--rotate` replaces them (old links stop working at once).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import click

from orchestrator import textsafe
from orchestrator.cli import options
from orchestrator.cli.localized import command
from orchestrator.errors import UsageError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.state import Store

base_url_option = click.option(
    "--base-url",
    required=True,
    metavar="URL",
    help=N_("Where students reach `guestlab serve`, e.g. https://lab.example.org:8080"),
)
rotate_option = click.option(
    "--rotate",
    is_flag=True,
    help=N_("Replace the secret first: old links stop working at once."),
)


@dataclass(frozen=True)
class Link:
    student: str
    name: str
    email: str
    url: str
    token: str


def _base(url: str) -> str:
    if not url.startswith(("http://", "https://")) or any(c in url for c in " ?#"):
        raise UsageError(
            _("--base-url {url} is not an http(s) URL without query").format(url=repr(url))
        )
    return url.rstrip("/")


def _link(store: Store, lab: str, base: str, rotate: bool) -> tuple[str, str]:
    """(url, token) of a lab's seat; ("", "") when the lab is not in the store."""
    from orchestrator.credentials import Seats

    if store.lab(lab) is None:
        return "", ""
    seats = Seats(store.db)
    token = seats.rotate(lab) if rotate else seats.issue(lab)
    return f"{base}/s/{token}", token


def _cell(value: str) -> str:
    """A value a spreadsheet will not run as a formula."""
    from orchestrator.classroom.gradebook import FORMULA_START

    value = textsafe.clean(value)
    return "'" + value if value.startswith(FORMULA_START) else value


def _print(links: list[Link], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([asdict(x) for x in links], indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["student", "name", "email", "url", "token"])
        for x in links:
            writer.writerow([_cell(x.student), _cell(x.name), _cell(x.email), x.url, x.token])
        click.echo(buf.getvalue(), nl=False)
    else:
        # plain columns, not a rich table: a URL must stay whole on its line to be copied
        rows = [(_("student"), _("name"), _("email"), "url")]
        rows += [
            (*(textsafe.clean(v) for v in (x.student, x.name, x.email)), x.url or _("(no lab up)"))
            for x in links
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            click.echo("  ".join([*(v.ljust(w) for v, w in zip(r, widths, strict=False)), r[3]]))


@command(
    "links",
    help=N_("Print each student's personal seat link (csv and json carry the token too)."),
    examples="""
        guestlab class links machine-id-clone --base-url https://lab.example.org:8080 --format csv
    """,
)
@click.argument("class_id", metavar="ID")
@base_url_option
@options.format_option("table", "csv", "json")
@rotate_option
def class_links(class_id: str, base_url: str, fmt: str, rotate: bool) -> None:
    from orchestrator.classroom.store import ClassStore

    base = _base(base_url)
    store = options.store()
    try:
        members = ClassStore(store.db).members(class_id)
        if not members:
            raise UsageError(
                _("no class {id}").format(id=class_id),
                hint=_("guestlab class status lists them"),
            )
        links = [
            Link(m.student, m.name, m.email, *_link(store, m.lab, base, rotate)) for m in members
        ]
    finally:
        store.close()
    _print(links, fmt)


@command(
    "link",
    help=N_("Print the seat link of one lab (a student's page with its terminals and Check)."),
)
@click.argument("scenario", metavar="ID")
@options.student_option()
@base_url_option
@rotate_option
def link(scenario: str, student: str | None, base_url: str, rotate: bool) -> None:
    base = _base(base_url)
    ref = options.ref(scenario, options.student(student))
    store = options.store()
    try:
        record = store.lab_of(ref)
        url, _token = _link(store, record.key if record else ref.key, base, rotate)
    finally:
        store.close()
    if not url:
        raise UsageError(
            _("no lab {lab} for student {student}").format(lab=ref.scenario, student=ref.student),
            hint=_("bring it up first: guestlab up {lab}").format(lab=ref.scenario),
        )
    click.echo(url)


#: the commands this module adds to `guestlab`
COMMANDS = (link,)
