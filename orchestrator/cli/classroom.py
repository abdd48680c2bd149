"""`guestlab class ...`: one scenario for a whole class, a lab per student, a gradebook.

`register` adds the group to `guestlab` and gives `guestlab gc` the classroom's own
collector (labs whose class time is up), so the single-lab commands never import the
classroom. What the commands print is built in `class_tables`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from orchestrator import messages, textsafe
from orchestrator.cli import class_enrol, options
from orchestrator.cli import class_tables as tables
from orchestrator.cli.console import UP_STEPS, ConsoleReporter, bars, err, out
from orchestrator.cli.host import Collector, add_collector
from orchestrator.cli.localized import Path as PathType
from orchestrator.cli.localized import group
from orchestrator.errors import GuestlabError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.backends.contract import LabRef
    from orchestrator.classroom.bulk import Outcome, Plan
    from orchestrator.classroom.roster import Student
    from orchestrator.state import Store

parallel_option = options.parallel_option(4, N_("Labs worked on at the same time."))


@group(
    "class",
    help=N_(
        "Run one scenario for a whole class: a lab per student, a gradebook.\n\n"
        "A class is named by its scenario id. Students work in their own lab with the usual"
        " verbs and `--student ID`; the instructor grades everyone with `class check` and"
        " watches the live grid with `guestlab serve`."
    ),
    examples="""
        guestlab class up machine-id-clone --roster class.csv --expires 3h
        guestlab class check machine-id-clone
        guestlab class export machine-id-clone --format csv > grades.csv
        guestlab class down machine-id-clone
    """,
)
def class_group() -> None:
    pass


def _expire_class_time(store: Store) -> list[str]:
    from orchestrator.classroom.bulk import expire

    return [_("class time is up: removed lab {lab}").format(lab=key) for key in expire(store)]


EXPIRE = Collector(N_("labs whose class time is up"), _expire_class_time)


def register(root: click.Group) -> None:
    """Add the class commands to `root`, and the expiry of class time to `guestlab gc`."""
    class_group.add_command(class_enrol.class_enrol)
    root.add_command(class_group)
    add_collector(EXPIRE)


@class_group.command(
    "up",
    help=N_(
        "Bring up one lab per student of the roster, in parallel.\n\n"
        "The roster is checked first and refused whole, with every bad line, and so is a class"
        " whose memory does not fit the host: nothing is created then. One student's failure"
        " does not stop the others; the command exits non-zero if any lab failed. Running it"
        " again retries the failed labs and leaves the others as they are."
    ),
)
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@click.option(
    "--roster",
    required=True,
    type=PathType(dir_okay=False, path_type=Path),
    help=N_("CSV file with the header id,name,email and one student per line."),
)
@parallel_option
@options.backend_option()
@click.option(
    "--memory",
    metavar="SIZE",
    help=N_(
        "Memory limit of each lab (e.g. 768M), shared by its machines"
        " (default: the scenario's limits)."
    ),
)
@click.option(
    "--expires",
    metavar="DURATION",
    help=N_("Remove the labs this long from now, at `guestlab gc`."),
)
@options.no_build_option
@click.option(
    "--no-pool", is_flag=True, help=N_("Make every lab now, even if a pool has some ready.")
)
def class_up(
    scenario: str,
    roster: Path,
    parallel: int,
    backend: str | None,
    memory: str | None,
    expires: str | None,
    no_build: bool,
    no_pool: bool,
) -> None:
    from orchestrator.classroom import bulk

    students = _roster(roster)
    seconds = bulk.parse_duration(expires) if expires else None
    per_lab = bulk.parse_memory(memory) if memory else None
    p = bulk.plan(scenario, students, backend, per_lab)
    p.use_pool = not no_pool
    store = options.store()
    title = _("Class {id}").format(id=escape(p.class_id))
    plan = _("{n} student(s) on {backend}, {memory} per lab, {parallel} at a time").format(
        n=len(students), backend=p.backend.name, memory=bulk.fmt_bytes(p.per_lab), parallel=parallel
    )
    out.print(f"[bold]{title}[/]: {plan}")
    started = time.monotonic()
    with out.status(_("checking the engine, the memory and the image...")):
        bulk.preflight(p, store, build_images=not no_build)
    with bars([s.id for s in students], len(UP_STEPS), out) as progress:
        outcomes = bulk.up(
            p,
            store,
            parallel=parallel,
            expires=seconds,
            progress=progress,
            build_images=not no_build,
            checked=True,
        )
    if options.typed_lang():  # the students' labs then speak it too, in the CLI and seats
        for o in outcomes:
            if o.ok:
                store.remember_language(p.labs[o.student].ref, messages.current())
    if p.use_pool:  # refill behind the class, once, if it has a pool
        from orchestrator.pool.claim import refill_later

        refill_later(store, p.class_id, p.backend.name)
    _report_up(store, p, students, outcomes, time.monotonic() - started, expires)


def _report_up(
    store: Store,
    p: Plan,
    students: list[Student],
    outcomes: list[Outcome],
    seconds: float,
    expires: str | None,
) -> None:
    """After `class up`: each student's outcome, what to do next, and the failures raised."""
    names = {s.id: s.name for s in students}
    out.print(tables.outcomes_table(_("Class {id}").format(id=p.class_id), outcomes, names))
    ok = sum(1 for o in outcomes if o.ok)
    summary = _("{ok}/{total} lab(s) up in {seconds} s.").format(
        ok=ok, total=len(outcomes), seconds=messages.decimal(seconds)
    )
    if expires:
        summary += " " + _("They expire in {expires} (at `guestlab gc`).").format(expires=expires)
    out.print(summary)
    _tell_earlier_roster(store, p, students)
    if ok:
        out.print(
            _(
                "Students: guestlab shell {id} --student ID · grade everyone: guestlab class"
                " check {id} · live grid: guestlab serve"
            ).format(id=p.class_id)
        )
    tables.raise_failures(outcomes, N_("come up"))


def _roster(path: Path) -> list[Student]:
    """The roster's students; every bad line is printed before the roster is refused."""
    from orchestrator.classroom.roster import RosterError, load

    try:
        return load(path)
    except RosterError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        raise


def _tell_earlier_roster(store: Store, p: Plan, students: list[Student]) -> None:
    """Say which students of an earlier roster, not in this one, still have a lab."""
    from orchestrator.classroom.store import ClassStore

    listed = {s.id for s in students}
    earlier = [
        m.student
        for m in ClassStore(store.db).members(p.class_id)
        if m.student not in listed and m.status == "up" and store.lab(m.lab)
    ]
    if earlier:
        kept = _("{n} student(s) of an earlier roster keep their lab in the class:").format(
            n=len(earlier)
        )
        how = _(
            "(`guestlab down {id} --student ID` removes a lab; the next `class up` then forgets"
            " its student)"
        ).format(id=p.class_id)
        out.print(f"[yellow]{kept}[/] {escape(', '.join(earlier))} {how}")


@class_group.command(
    "check",
    help=N_(
        "Check every student's lab concurrently and print the gradebook.\n\n"
        "Tasks that must survive a reboot are graded after the machines they check have been"
        " restarted, which ends the students' shells in them; during a class, `--no-reboot`"
        " gives a live view instead. Each class check is recorded with its time (`class export`"
        " prints the last one again). Students who share a value that should be theirs alone (a"
        " parameter, a machine ID, a host key) are flagged. Exits 0 when every lab could be"
        " checked, whatever the grades."
    ),
)
@click.argument("class_id", metavar="ID")
@options.format_option("table", "csv", "json", "junit")
@options.parallel_option(8, N_("Labs checked at the same time."))
@options.no_reboot_option
def class_check(class_id: str, fmt: str, parallel: int, no_reboot: bool) -> None:
    from orchestrator.classroom import bulk
    from orchestrator.classroom.store import ClassStore

    store = options.store()
    members = ClassStore(store.db).members(bulk.require_class(ClassStore(store.db), class_id).id)
    with bars([m.student for m in members], 1, err) as progress:
        book = bulk.check(
            store, class_id, parallel=parallel, progress=progress, reboot=not no_reboot
        )
    tables.print_book(book, fmt)
    broken = [r for r in book["students"] if r["error"]]
    if broken:
        raise bulk.ClassError(
            _("{failed} of {total} lab(s) could not be checked: {students}").format(
                failed=len(broken),
                total=len(book["students"]),
                students=", ".join(r["student"] for r in broken[:10]),
            ),
            hint=_(
                "`guestlab class status {id}` shows their state; `guestlab class up` again"
                " brings missing labs back"
            ).format(id=class_id),
        )


@class_group.command(
    "export",
    help=N_("Print the gradebook of the last `class check` (for an LMS), without checking again."),
)
@click.argument("class_id", metavar="ID")
@options.format_option("csv", "json", "junit")
def class_export(class_id: str, fmt: str) -> None:
    from orchestrator.classroom import bulk
    from orchestrator.classroom.store import ClassStore

    cstore = ClassStore(options.store().db)
    bulk.require_class(cstore, class_id)
    book = cstore.last_gradebook(class_id)
    if book is None:
        raise GuestlabError(
            _("class {id} has not been checked yet").format(id=class_id),
            hint=f"guestlab class check {class_id}",
        )
    tables.print_book(book, fmt)


@class_group.command(
    "status",
    help=N_("Show the classes, or one class's students with their lab and latest score."),
)
@click.argument("class_id", metavar="ID", required=False)
@options.format_option("table", "json")
def class_status(class_id: str | None, fmt: str) -> None:
    from orchestrator.classroom import bulk
    from orchestrator.classroom import gradebook as gb
    from orchestrator.classroom.store import ClassStore

    store = options.store()
    cstore = ClassStore(store.db)
    if class_id is None:
        rows = tables.classes_rows(cstore)
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            out.print(_("No classes. Bring one up: guestlab class up ID --roster class.csv"))
        else:
            out.print(tables.classes_table(rows))
        return
    klass = bulk.require_class(cstore, class_id)
    book = gb.live(store.db, class_id)
    assert book is not None
    members = cstore.members(class_id)
    labs = {m.student: store.lab(m.lab) for m in members}
    at = _placement(klass, [rec.ref for rec in labs.values() if rec])
    where = {m.student: at[m.lab] for m in members if m.lab in at}
    if fmt == "json":
        for r in book["students"]:
            rec = labs.get(r["student"])
            r["lab_status"] = rec.status if rec else "absent"
            if where:
                r["lxd_member"] = where.get(r["student"], "")
        click.echo(json.dumps(textsafe.data(book), indent=2))
    else:
        out.print(tables.class_table(klass, book, labs, where))


def _placement(klass: Any, refs: list[LabRef]) -> dict[str, str]:
    """Lab key -> its LXD cluster member (empty elsewhere); a lab claimed from a pool
    keeps the pool lab's key."""
    from orchestrator import backends
    from orchestrator.classroom import placement
    from orchestrator.scenario.load import load_file

    if klass.backend != "lxd" or not os.environ.get("GUESTLAB_LXD_ENDPOINT"):
        return {}
    names = [m.name for m in load_file(Path(klass.scenario_path)).machines]
    return placement.where(backends.get(klass.backend), refs, names)


@class_group.command("reset", help=N_("Put one student's lab back into its starting state."))
@click.argument("class_id", metavar="ID")
@options.student_option(required=True)
def class_reset(class_id: str, student: str) -> None:
    from orchestrator.classroom import bulk

    bulk.reset(options.store(), class_id, student, ConsoleReporter(out))
    out.print(
        _("The lab of {student} in {id} is back at its starting state.").format(
            student=escape(student), id=escape(class_id)
        )
    )


@class_group.command(
    "down",
    help=N_("Remove every student's lab. Safe to run twice; the roster and grades stay recorded."),
)
@click.argument("class_id", metavar="ID")
@parallel_option
def class_down(class_id: str, parallel: int) -> None:
    from orchestrator.classroom import bulk
    from orchestrator.classroom.store import ClassStore

    store = options.store()
    members = ClassStore(store.db).members(class_id)
    if not members:
        out.print(
            _("No class {id} with students here; nothing to remove.").format(id=escape(class_id))
        )
        return
    with bars([m.student for m in members], 1, out) as progress:
        outcomes = bulk.down(store, class_id, parallel=parallel, progress=progress)
    names = {m.student: m.name for m in members}
    out.print(tables.outcomes_table(_("Class {id} down").format(id=class_id), outcomes, names))
    tables.raise_failures(outcomes, N_("be removed"))


#: the commands this module adds to `guestlab`
COMMANDS = (class_group,)
