"""`guestlab class ...` and `guestlab serve`: the instructor's commands.

Registered on the main `guestlab` group by orchestrator/cli.py. As there, commands import
what they need when they run, so `guestlab --help` loads no engine SDK, and problems are
raised as GuestlabError for `main()` to print as one sentence and map to an exit code.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from orchestrator import backends, textsafe
from orchestrator.errors import GuestlabError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

UP_STEPS = ("image", "provision", "setup", "clone", "snapshot")
STEP_LABELS = {
    "image": "image",
    "provision": "creating machines",
    "setup": "starting state",
    "clone": "cloning",
    "snapshot": "saving start",
    "restore": "restoring",
}


class ProgressBars:
    """One rich progress bar per student; lifecycle steps move it forward.

    rich's Progress takes a lock around every update, so worker threads report directly.
    """

    def __init__(self, progress: Any, students: list[str], total: int) -> None:
        self.progress = progress
        self.total = total
        self.tasks = {
            s: progress.add_task(escape(s), total=total, detail="waiting", start=False)
            for s in students
        }

    def reporter(self, student: str) -> Any:
        return _BarReporter(self.progress, self.tasks[student])

    def finished(self, student: str, ok: bool, detail: str) -> None:
        task = self.tasks[student]
        shown = textsafe.markup(detail if len(detail) < 70 else detail[:67] + "...")
        self.progress.start_task(task)
        self.progress.update(
            task,
            completed=self.total,
            detail=f"[green]{shown}[/]" if ok else f"[red]failed: {shown}[/]",
        )
        self.progress.stop_task(task)


class _BarReporter:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.progress.start_task(self.task)
        self.progress.update(self.task, detail=STEP_LABELS.get(name, name))
        yield
        self.progress.advance(self.task)

    def line(self, text: str) -> None:
        shown = text if len(text) < 60 else text[:57] + "..."
        self.progress.update(self.task, detail=textsafe.markup(shown))


@contextlib.contextmanager
def _bars(students: list[str], total: int, console: Console) -> Iterator[ProgressBars]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=24),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        # a class larger than the screen: the summary table says it all afterwards
        transient=len(students) > 40 or not console.is_terminal,
    )
    with progress:
        yield ProgressBars(progress, students, total)


def _store() -> Any:
    from orchestrator.state import Store

    return Store()


def _outcomes_table(title: str, outcomes: list[Any], names: dict[str, str]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for col in ("student", "name", "result", "time", "details"):
        table.add_column(col, justify="right" if col == "time" else "left")
    for o in outcomes:
        result = Text("ok", style="green") if o.ok else Text("FAILED", style="bold red")
        detail = o.detail + (f"\nhint: {o.hint}" if o.hint and not o.ok else "")
        table.add_row(
            Text(textsafe.clean(o.student)),
            Text(textsafe.clean(names.get(o.student, ""))),
            result,
            f"{o.seconds:.1f} s",
            Text(textsafe.clean(detail), style="" if o.ok else "red"),
        )
    return table


def _raise_failures(outcomes: list[Any], what: str) -> None:
    from orchestrator.classroom.bulk import ClassError

    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise ClassError(
            f"{len(failed)} of {len(outcomes)} student lab(s) could not {what}:"
            f" {', '.join(o.student for o in failed[:10])}{' ...' if len(failed) > 10 else ''}",
            hint="the table above gives each one's reason; run the same command again to retry"
            " them (labs that are done are kept)",
        )


parallel_option = click.option(
    "--parallel",
    "-j",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Labs worked on at the same time.",
)


# -- class --------------------------------------------------------------------------------------
@click.group("class")
def class_group() -> None:
    """Run one scenario for a whole class: a lab per student, a gradebook.

    A class is named by its scenario id. Students work in their own lab with the usual
    verbs and `--student ID`; the instructor grades everyone with `class check` and
    watches the live grid with `guestlab serve`.

    \b
      guestlab class up machine-id-clone --roster class.csv --expires 3h
      guestlab class check machine-id-clone
      guestlab class export machine-id-clone --format csv > grades.csv
      guestlab class down machine-id-clone
    """


@class_group.command("up")
@click.argument("scenario", metavar="ID|PATH")
@click.option(
    "--roster",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV file with the header id,name,email and one student per line.",
)
@parallel_option
@click.option(
    "--backend",
    "-b",
    type=click.Choice(backends.names()),
    help="Engine to use (default: the scenario's first).",
)
@click.option(
    "--memory",
    metavar="SIZE",
    help="Memory limit of each lab (e.g. 768M), shared by its machines"
    " (default: the scenario's limits).",
)
@click.option(
    "--expires", metavar="DURATION", help="Remove the labs this long from now, at `guestlab gc`."
)
@click.option("--no-build", is_flag=True, help="Fail instead of building a missing image.")
def class_up(
    scenario: str,
    roster: Path,
    parallel: int,
    backend: str | None,
    memory: str | None,
    expires: str | None,
    no_build: bool,
) -> None:
    """Bring up one lab per student of the roster, in parallel.

    The roster is checked first and refused whole, with every bad line, and so is a class
    whose memory does not fit the host: nothing is created then. One student's failure
    does not stop the others; the command exits non-zero if any lab failed. Running it
    again retries the failed labs and leaves the others as they are.
    """
    from orchestrator.classroom import bulk
    from orchestrator.classroom.roster import RosterError, load

    try:
        students = load(roster)
    except RosterError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        raise
    seconds = bulk.parse_duration(expires) if expires else None
    per_lab = bulk.parse_memory(memory) if memory else None
    p = bulk.plan(scenario, students, backend, per_lab)
    store = _store()
    out.print(
        f"[bold]Class {escape(p.class_id)}[/]: {len(students)} student(s) on {p.backend.name},"
        f" {bulk.fmt_bytes(p.per_lab)} per lab, {parallel} at a time"
    )
    started = time.monotonic()
    with out.status("checking the engine, the memory and the image..."):
        bulk.preflight(p, store, build_images=not no_build)
    with _bars([s.id for s in students], len(UP_STEPS), out) as bars:
        outcomes = bulk.up(
            p,
            store,
            parallel=parallel,
            expires=seconds,
            progress=bars,
            build_images=not no_build,
            checked=True,
        )
    names = {s.id: s.name for s in students}
    out.print(_outcomes_table(f"Class {p.class_id}", outcomes, names))
    ok = sum(1 for o in outcomes if o.ok)
    out.print(
        f"{ok}/{len(outcomes)} lab(s) up in {time.monotonic() - started:.1f} s."
        + (f" They expire in {expires} (at `guestlab gc`)." if expires else "")
    )
    from orchestrator.classroom.store import ClassStore

    listed = {s.id for s in students}
    earlier = [
        m.student
        for m in ClassStore(store.db).members(p.class_id)
        if m.student not in listed and m.status == "up" and store.lab(m.lab)
    ]
    if earlier:
        out.print(
            f"[yellow]{len(earlier)} student(s) of an earlier roster keep their lab in the"
            f" class:[/] {escape(', '.join(earlier))} (`guestlab down {p.class_id} --student ID`"
            " removes a lab; the next `class up` then forgets its student)"
        )
    if ok:
        out.print(
            f"Students: guestlab shell {p.class_id} --student ID · "
            f"grade everyone: guestlab class check {p.class_id} · live grid: guestlab serve"
        )
    _raise_failures(outcomes, "come up")


@class_group.command("check")
@click.argument("class_id", metavar="ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "junit"]),
    default="table",
    show_default=True,
)
@click.option(
    "--parallel",
    "-j",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Labs checked at the same time.",
)
def class_check(class_id: str, fmt: str, parallel: int) -> None:
    """Check every student's lab concurrently and print the gradebook.

    Each class check is recorded with its time (`class export` prints the last one again).
    Students who share a value that should be theirs alone (a parameter, a machine ID, a
    host key) are flagged. Exits 0 when every lab could be checked, whatever the grades.
    """
    from orchestrator.classroom import bulk
    from orchestrator.classroom import gradebook as gb
    from orchestrator.classroom.store import ClassStore

    store = _store()
    members = ClassStore(store.db).members(bulk.require_class(ClassStore(store.db), class_id).id)
    with _bars([m.student for m in members], 1, err) as bars:
        book = bulk.check(store, class_id, parallel=parallel, progress=bars)
    _print_book(book, fmt, gb)
    broken = [r for r in book["students"] if r["error"]]
    if broken:
        raise bulk.ClassError(
            f"{len(broken)} of {len(book['students'])} lab(s) could not be checked:"
            f" {', '.join(r['student'] for r in broken[:10])}",
            hint="`guestlab class status " + class_id + "` shows their state;"
            " `guestlab class up` again brings missing labs back",
        )


def _print_book(book: dict[str, Any], fmt: str, gb: Any) -> None:
    if fmt == "json":
        click.echo(json.dumps(textsafe.data(book), indent=2))
    elif fmt == "csv":
        click.echo(gb.to_csv(book), nl=False)
    elif fmt == "junit":
        click.echo(gb.to_junit(book))
    else:
        out.print(gb.to_table(book))


@class_group.command("export")
@click.argument("class_id", metavar="ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "junit"]),
    default="csv",
    show_default=True,
)
def class_export(class_id: str, fmt: str) -> None:
    """Print the gradebook of the last `class check` (for an LMS), without checking again."""
    from orchestrator.classroom import bulk
    from orchestrator.classroom import gradebook as gb
    from orchestrator.classroom.store import ClassStore

    cstore = ClassStore(_store().db)
    bulk.require_class(cstore, class_id)
    book = cstore.last_gradebook(class_id)
    if book is None:
        raise GuestlabError(
            f"class {class_id} has not been checked yet",
            hint=f"guestlab class check {class_id}",
        )
    _print_book(book, fmt, gb)


@class_group.command("status")
@click.argument("class_id", metavar="ID", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def class_status(class_id: str | None, fmt: str) -> None:
    """Show the classes, or one class's students with their lab and latest score."""
    from rich.table import Table
    from rich.text import Text

    from orchestrator.classroom import bulk
    from orchestrator.classroom import gradebook as gb
    from orchestrator.classroom.store import ClassStore

    store = _store()
    cstore = ClassStore(store.db)
    if class_id is None:
        classes = cstore.classes()
        rows = []
        for c in classes:
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
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            out.print("No classes. Bring one up: guestlab class up ID --roster class.csv")
            return
        table = Table(title="Classes", title_justify="left")
        for col in ("class", "backend", "status", "labs up", "expires", "last class check"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["class"],
                r["backend"],
                r["status"],
                f"{r['labs_up']}/{r['students']}",
                _expiry(r["expires"]) if r["status"] == "up" else "-",
                gb.iso(r["last_class_check"]).replace("T", " ")[:19] or "-",
            )
        out.print(table)
        return

    klass = bulk.require_class(cstore, class_id)
    book = gb.live(store.db, class_id)
    assert book is not None
    labs = {m.student: store.lab(m.lab) for m in cstore.members(class_id)}
    if fmt == "json":
        for r in book["students"]:
            rec = labs.get(r["student"])
            r["lab_status"] = rec.status if rec else "absent"
        click.echo(json.dumps(textsafe.data(book), indent=2))
        return
    table = Table(
        title=f"Class {class_id} · {klass.backend} · {klass.status}"
        + (
            f" · expires {_expiry(klass.expires)}" if klass.expires and klass.status == "up" else ""
        ),
        title_justify="left",
    )
    for col in ("student", "name", "email", "lab", "score", "last check", "hints", "notes"):
        table.add_column(col)
    for r in book["students"]:
        rec = labs.get(r["student"])
        lab = (
            rec.status + (f" (at {rec.step})" if rec.step and rec.status != "up" else "")
            if rec
            else "absent"
        )
        style = "green" if lab == "up" else "yellow"
        checked = any(c["state"] != gb.UNCHECKED for c in r["tasks"].values())
        table.add_row(
            Text(textsafe.clean(r["student"])),
            Text(textsafe.clean(r["name"])),
            Text(textsafe.clean(r["email"])),
            Text(lab, style=style),
            f"{r['total']}/{r['max_total']}" if checked else "-",
            gb.short_time(r["last_check"]),
            str(r["hints"]),
            Text(textsafe.clean(r["error"]), style="red"),
        )
    out.print(table)


def _expiry(ts: float | None) -> str:
    if not ts:
        return "never"
    left = ts - time.time()
    if left <= 0:
        return "expired (removed at the next `guestlab gc`)"
    hours, rest = divmod(int(left), 3600)
    return f"in {hours} h {rest // 60:02d} min" if hours else f"in {rest // 60} min"


@class_group.command("reset")
@click.argument("class_id", metavar="ID")
@click.option("--student", "-s", required=True, metavar="ID", help="The student whose lab it is.")
def class_reset(class_id: str, student: str) -> None:
    """Put one student's lab back into its starting state."""
    from orchestrator.classroom import bulk
    from orchestrator.cli import ConsoleReporter

    bulk.reset(_store(), class_id, student, ConsoleReporter(out))
    out.print(f"The lab of {escape(student)} in {escape(class_id)} is back at its starting state.")


@class_group.command("down")
@click.argument("class_id", metavar="ID")
@parallel_option
def class_down(class_id: str, parallel: int) -> None:
    """Remove every student's lab. Safe to run twice; the roster and grades stay recorded."""
    from orchestrator.classroom import bulk
    from orchestrator.classroom.store import ClassStore

    store = _store()
    members = ClassStore(store.db).members(class_id)
    if not members:
        out.print(f"No class {escape(class_id)} with students here; nothing to remove.")
        return
    with _bars([m.student for m in members], 1, out) as bars:
        outcomes = bulk.down(store, class_id, parallel=parallel, progress=bars)
    names = {m.student: m.name for m in members}
    out.print(_outcomes_table(f"Class {class_id} down", outcomes, names))
    _raise_failures(outcomes, "be removed")


# -- serve --------------------------------------------------------------------------------------
@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free."
)
@click.option("--access-log", is_flag=True, help="Print each request on stderr.")
def serve(host: str, port: int, access_log: bool) -> None:
    """Serve the live dashboard: students x tasks, refreshed every few seconds.

    Open the URL printed at start: it carries a random token, needed by every request
    (`?token=`, `Authorization: Bearer TOKEN` or `X-Guestlab-Token`). The dashboard only
    reads the state store, so every command keeps working while it runs. Stop it with
    Ctrl-C.
    """
    from orchestrator.classroom.dashboard import DashboardServer, class_ids, new_token
    from orchestrator.classroom.store import ClassStore

    store = _store()
    ClassStore(store.db)  # the tables exist before the read-only connections look for them
    path = store.path
    store.close()
    token = new_token()

    def log(line: str) -> None:
        if access_log:
            err.print(f"[dim]{textsafe.markup(line)}[/]")

    try:
        server = DashboardServer((host, port), path, token, log)
    except OSError as e:
        raise GuestlabError(
            f"cannot listen on {host}:{port}: {e.strerror or e}",
            hint="choose another --port (0 picks a free one)",
        ) from None
    url = f"{server.url}?token={token}"
    # click.echo: a URL must not be wrapped at the terminal's width
    click.echo(f"Dashboard: {url}")
    for cid in class_ids(path):
        click.echo(f"  class {cid}: {server.url}class/{urllib.parse.quote(cid)}?token={token}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach it and has"
            " the token sees the grades (plain HTTP)"
        )
    out.print("[dim]Ctrl-C stops it.[/]")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        out.print("Dashboard stopped.")
    finally:
        server.server_close()
