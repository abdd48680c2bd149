"""What the class commands print: each student's outcome, the classes, one class's
students, and the gradebook in the format asked for."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from orchestrator import messages, textsafe
from orchestrator.cli.console import out
from orchestrator.messages import _

if TYPE_CHECKING:
    from orchestrator.classroom.bulk import Outcome
    from orchestrator.classroom.store import ClassRecord, ClassStore
    from orchestrator.state import LabRecord


def outcomes_table(title: str, outcomes: Sequence[Outcome], names: Mapping[str, str]) -> Table:
    """One row per student: whether their lab did what was asked, how long it took, why not."""
    table = Table(title=title, title_justify="left")
    for col in (_("student"), _("name"), _("result")):
        table.add_column(col)
    table.add_column(_("time"), justify="right")
    table.add_column(_("details"))
    for o in outcomes:
        result = Text(_("ok"), style="green") if o.ok else Text(_("FAILED"), style="bold red")
        hint = _("hint:")
        detail = o.detail + (f"\n{hint} {o.hint}" if o.hint and not o.ok else "")
        table.add_row(
            Text(textsafe.clean(o.student)),
            Text(textsafe.clean(names.get(o.student, ""))),
            result,
            f"{messages.decimal(o.seconds)} s",
            Text(textsafe.clean(detail), style="" if o.ok else "red"),
        )
    return table


def raise_failures(outcomes: Sequence[Outcome], what: str) -> None:
    """Raise a ClassError naming the students whose lab could not do `what` (marked with
    `N_` where it is written), if any."""
    from orchestrator.classroom.bulk import ClassError

    failed = [o for o in outcomes if not o.ok]
    if failed:
        names = ", ".join(o.student for o in failed[:10]) + (" ..." if len(failed) > 10 else "")
        raise ClassError(
            _("{failed} of {total} student lab(s) could not {what}: {students}").format(
                failed=len(failed), total=len(outcomes), what=_(what), students=names
            ),
            hint=_(
                "the table above gives each one's reason; run the same command again to retry"
                " them (labs that are done are kept)"
            ),
        )


def print_book(book: dict[str, Any], fmt: str) -> None:
    """A gradebook as JSON, CSV, JUnit or a table."""
    from orchestrator.classroom import gradebook as gb

    if fmt == "json":
        click.echo(json.dumps(textsafe.data(book), indent=2))
    elif fmt == "csv":
        click.echo(gb.to_csv(book), nl=False)
    elif fmt == "junit":
        click.echo(gb.to_junit(book))
    else:
        out.print(gb.to_table(book))


def expiry(ts: float | None) -> str:
    """When a class's labs go: never, in how long, or at the next `gc`."""
    if not ts:
        return _("never")
    left = ts - time.time()
    if left <= 0:
        return _("expired (removed at the next `guestlab gc`)")
    hours, rest = divmod(int(left), 3600)
    if hours:
        return _("in {hours} h {minutes} min").format(hours=hours, minutes=f"{rest // 60:02d}")
    return _("in {minutes} min").format(minutes=rest // 60)


def classes_rows(cstore: ClassStore) -> list[dict[str, Any]]:
    """Every class: its engine, state, students, labs up, memory, expiry and last check."""
    rows = []
    for c in cstore.classes():
        members = cstore.members(c.id)
        last = cstore.last_gradebook(c.id)
        rows.append(
            {
                "class": c.id,
                "backend": c.backend,
                "status": c.status,
                "students": len(members),
                "labs_up": sum(1 for m in members if m.status == "up"),
                "memory_per_lab": c.memory,
                "expires": c.expires,
                "last_class_check": last["checked_at"] if last else None,
            }
        )
    return rows


def classes_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The rows of `classes_rows` as a table."""
    from orchestrator.classroom import gradebook as gb

    table = Table(title=_("Classes"), title_justify="left")
    table.add_column(_("class"), no_wrap=True)
    for col in (_("backend"), _("status"), _("labs up"), _("expires"), _("last class check")):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["class"],
            r["backend"],
            _(r["status"]),
            f"{r['labs_up']}/{r['students']}",
            expiry(r["expires"]) if r["status"] == "up" else "-",
            gb.iso(r["last_class_check"]).replace("T", " ")[:19] or "-",
        )
    return table


def lab_state(rec: LabRecord | None) -> str:
    """A student's lab as the class status shows it: its status (and step), or absent."""
    from orchestrator.views import STATUSES

    if rec is None:
        return _("absent")
    shown = _(STATUSES[rec.status]) if rec.status in STATUSES else rec.status
    at = _("at {step}").format(step=rec.step)
    return shown + (f" ({at})" if rec.step and rec.status != "up" else "")


def class_table(
    klass: ClassRecord,
    book: Mapping[str, Any],
    labs: Mapping[str, LabRecord | None],
    where: Mapping[str, str] | None = None,
) -> Table:
    """One class's students: their lab (and its LXD cluster member), score, last check,
    hints taken and problems."""
    from orchestrator.classroom import gradebook as gb

    expires = (
        " · " + _("expires {when}").format(when=expiry(klass.expires))
        if klass.expires and klass.status == "up"
        else ""
    )
    title = _("Class {id}").format(id=klass.id)
    table = Table(
        title=f"{title} · {klass.backend} · {_(klass.status)}{expires}", title_justify="left"
    )
    table.add_column(_("student"), no_wrap=True)
    for col in (_("name"), _("email"), _("lab"), _("score"), _("last check"), _("hints")):
        table.add_column(col)
    table.add_column(_("notes"))
    for r in book["students"]:
        lab = lab_state(labs.get(r["student"]))
        member = (where or {}).get(r["student"]) or "?"
        offline = member.endswith(" (offline)")
        shown = _("{state} on {member}").format(state=lab, member=member) if where else lab
        checked = any(c["state"] != gb.UNCHECKED for c in r["tasks"].values())
        table.add_row(
            Text(textsafe.clean(r["student"])),
            Text(textsafe.clean(r["name"])),
            Text(textsafe.clean(r["email"])),
            Text(shown, style="green" if lab == _("up") and not offline else "yellow"),
            f"{r['total']}/{r['max_total']}" if checked else "-",
            gb.short_time(r["last_check"]),
            str(r["hints"]),
            Text(textsafe.clean(r["error"]), style="red"),
        )
    return table
