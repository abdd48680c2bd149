"""What the CLI shows, built as rich renderables or text; nothing here prints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchestrator import textsafe
from orchestrator.report import Report, TaskResult
from orchestrator.state import LabRecord

if TYPE_CHECKING:  # `status` and `list` show no scenario model: pydantic stays unloaded
    from orchestrator.scenario.model import Scenario


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def catalog_table(
    rows: Sequence[tuple[str, dict[str, Any] | None, str]], *, long: bool = False
) -> Table:
    """rows: (file, its summary or None when invalid, error text); `long` adds the file."""
    table = Table(title="Scenarios", title_justify="left")
    for col in ("id", "title", "level", "backends", *(["file"] if long else [])):
        table.add_column(col, overflow="fold")
    for ref, sc, error in rows:
        extra = [ref] if long else []
        if sc is None:
            table.add_row(ref, Text(f"invalid: {error}", style="red"), "", "", *extra)
        else:
            table.add_row(sc["id"], sc["title"], sc["level"], ", ".join(sc["backends"]), *extra)
    return table


def search_path_table(folders: Sequence[tuple[str, str]], shadowed: dict[str, list[str]]) -> Table:
    """The scenario search path in order (folder, what put it there) and what is shadowed."""
    table = Table(title="Search path (first match wins)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("folder", overflow="fold")
    table.add_column("from")
    for n, (folder, source) in enumerate(folders, 1):
        table.add_row(str(n), folder, source)
    for winner, losers in shadowed.items():
        for loser in losers:
            table.add_row("", Text(f"{loser} is shadowed by {winner}", style="yellow"), "")
    return table


def catalog_json(rows: Sequence[tuple[str, dict[str, Any] | None, str]]) -> list[dict[str, Any]]:
    out = []
    for ref, sc, error in rows:
        if sc is None:
            out.append({"file": ref, "error": error})
        else:
            out.append({"id": sc["id"], "file": ref, **{k: v for k, v in sc.items() if k != "id"}})
    return out


def scenario_view(sc: Scenario, *, instructions: bool = True) -> RenderableType:
    from rich.markdown import Markdown  # here: markdown-it costs `check` and `status` 25 ms

    meta = sc.metadata
    parts: list[RenderableType] = [
        Text(meta.title, style="bold"),
        Text(
            f"{sc.id} · {meta.level} · about {meta.duration} · {meta.objective or 'LPIC-1 102.6'}"
            f" · backends: {', '.join(sc.backends)}",
            style="dim",
        ),
    ]
    if sc.description.strip():
        parts.append(Markdown(sc.description))
    machines = Table(title="Machines", title_justify="left")
    for col in ("machine", "image", "init", "notes"):
        machines.add_column(col)
    for m in sc.machines:
        root = sc.root_of(m.name)
        note = f"clone of {m.clone_of}" if m.clone_of else ""
        if m.grading:
            when = "as you left it" if m.grading.state == "current" else "as it started"
            note = f"made by each check: a copy of {m.clone_of} {when}"
        machines.add_row(m.name, root.image or "debian-12-systemd", root.init or "systemd", note)
    parts.append(machines)
    for n, task in enumerate(sc.tasks, 1):
        body: list[RenderableType] = []
        if instructions and task.instructions.strip():
            body.append(Markdown(task.instructions))
        hints = f"{len(task.hints)} hint(s): guestlab hint {sc.id} {task.id}" if task.hints else ""
        body.append(Text(f"{task.points} point(s). {hints}", style="dim"))
        parts.append(
            Panel(Group(*body), title=f"Task {n} · {task.id}: {task.title}", title_align="left")
        )
    return Group(*parts)


def report_table(report: Report) -> RenderableType:
    """The result of one check run; what machines printed is shown as plain, clean text."""
    table = Table(
        title=f"{textsafe.markup(report.scenario)} · {textsafe.markup(report.student)}",
        title_justify="left",
    )
    table.add_column("task")
    table.add_column("result")
    table.add_column("points", justify="right")
    table.add_column("what is wrong")
    for task in report.tasks:
        result = _verdict(task)
        why = "\n".join(f"{c.name}: {c.message}" for c in task.failing)
        if task.unproven:
            why = "\n".join([UNPROVEN_WHY, *([why] if why else [])])
        table.add_row(
            Text(textsafe.clean(task.id)),
            result,
            f"{task.points}/{task.max_points}",
            Text(textsafe.clean(why)),
        )
    style = "bold green" if report.passed else "bold"
    total = Text(f"Score: {report.score}/{report.max_score}", style=style)
    if report.rebooted:
        return Group(
            table,
            total,
            Text(textsafe.clean(f"Rebooted before grading: {', '.join(report.rebooted)}")),
        )
    return Group(table, total)


#: why an `after_reboot` task graded by `check --no-reboot` earns nothing
UNPROVEN_WHY = "graded without the reboot it asks for: run `guestlab check` to prove it"


def _verdict(task: TaskResult) -> Text:
    if task.unproven:
        return Text("UNPROVEN", style="bold yellow")
    return Text("PASS", style="bold green") if task.passed else Text("FAIL", style="bold red")


def labs_table(records: Sequence[LabRecord], scores: dict[str, str]) -> Table:
    table = Table(title="Labs", title_justify="left")
    for col in ("scenario", "student", "backend", "status", "last check", "updated"):
        table.add_column(col)
    for r in records:
        status = r.status if r.status == "up" else f"{r.status} (at {r.step or '?'})"
        style = "green" if r.status == "up" else "yellow"
        table.add_row(
            r.scenario,
            r.student,
            r.backend,
            Text(status, style=style),
            scores.get(r.key, "-"),
            when(r.updated),
        )
    return table


def doctor_table(rows: Sequence[tuple[str, bool, str, str]]) -> Table:
    table = Table(title="Backends on this host", title_justify="left")
    for col in ("backend", "usable", "details", "how to fix"):
        table.add_column(col)
    for name, usable, detail, fix in rows:
        mark = Text("yes", style="green") if usable else Text("no", style="red")
        table.add_row(name, mark, detail, fix)
    return table
