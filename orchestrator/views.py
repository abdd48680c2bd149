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
from orchestrator.messages import N_, _

if TYPE_CHECKING:  # `status` and `list` show no scenario: the format stays unloaded
    from orchestrator.lab import Lab
    from orchestrator.report import Report, TaskResult
    from orchestrator.scenario.model import Scenario
    from orchestrator.state import LabRecord

#: a scenario's `metadata.level`, translated where shown
LEVELS = {
    "beginner": N_("beginner"),
    "intermediate": N_("intermediate"),
    "advanced": N_("advanced"),
}


def level(value: str) -> str:
    return _(LEVELS[value]) if value in LEVELS else value


def duration(value: str) -> str:
    """A scenario's `metadata.duration` (`20m`, `1h`, `90s`) as a reader says it."""
    units = {"s": N_("{n} s"), "m": N_("{n} min"), "h": N_("{n} h")}
    number, unit = value[:-1], value[-1:]
    return _(units[unit]).format(n=number) if number.isdigit() and unit in units else value


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def catalog_table(
    rows: Sequence[tuple[str, dict[str, Any] | None, str]], *, long: bool = False
) -> Table:
    """rows: (file, its summary or None when invalid, error text); `long` adds the file."""
    table = Table(title=_("Scenarios"), title_justify="left")
    # ids are what a student types: never cut nor folded; the title wraps instead
    table.add_column(_("id"), no_wrap=True)
    table.add_column(_("title"), overflow="fold", ratio=1)
    table.add_column(_("level"), overflow="fold")
    table.add_column(_("backends"), overflow="fold")
    if long:
        table.add_column(_("file"), overflow="fold")
    for ref, sc, error in rows:
        extra = [ref] if long else []
        if sc is None:
            invalid = _("invalid: {error}").format(error=error)
            table.add_row(ref, Text(invalid, style="red"), "", "", *extra)
        else:
            backends = ", ".join(sc["backends"])
            table.add_row(sc["id"], sc["title"], level(sc["level"]), backends, *extra)
    return table


def search_path_table(folders: Sequence[tuple[str, str]], shadowed: dict[str, list[str]]) -> Table:
    """The scenario search path in order (folder, what put it there) and what is shadowed."""
    table = Table(title=_("Search path (first match wins)"), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(_("folder"), overflow="fold")
    table.add_column(_("from"))
    for n, (folder, source) in enumerate(folders, 1):
        table.add_row(str(n), folder, source)
    for winner, losers in shadowed.items():
        for loser in losers:
            note = _("{loser} is shadowed by {winner}").format(loser=loser, winner=winner)
            table.add_row("", Text(note, style="yellow"), "")
    return table


def catalog_json(rows: Sequence[tuple[str, dict[str, Any] | None, str]]) -> list[dict[str, Any]]:
    out = []
    for ref, sc, error in rows:
        if sc is None:
            out.append({"file": ref, "error": error})
        else:
            out.append({"id": sc["id"], "file": ref, **{k: v for k, v in sc.items() if k != "id"}})
    return out


def scenario_view(
    sc: Scenario, *, instructions: bool = True, student_flag: str = ""
) -> RenderableType:
    """The scenario as a student reads it; `student_flag` goes with the commands shown."""
    from rich.markdown import Markdown  # here: markdown-it costs `check` and `status` 25 ms

    meta = sc.metadata
    parts: list[RenderableType] = [
        Text(meta.title, style="bold"),
        Text(
            " · ".join(
                [
                    sc.id,
                    level(meta.level),
                    _("about {duration}").format(duration=duration(meta.duration)),
                    meta.objective or "LPIC-1 102.6",
                    _("backends: {names}").format(names=", ".join(sc.backends)),
                ]
            ),
            style="dim",
        ),
    ]
    if sc.description.strip():
        parts.append(Markdown(sc.description))
    machines = Table(title=_("Machines"), title_justify="left")
    for col in (_("machine"), _("image"), _("init"), _("notes")):
        machines.add_column(col)
    for m in sc.machines:
        root = sc.root_of(m.name)
        note = _("clone of {machine}").format(machine=m.clone_of) if m.clone_of else ""
        if m.grading and m.grading.state == "current":
            note = _("made by each check: a copy of {machine} as you left it")
        elif m.grading:
            note = _("made by each check: a copy of {machine} as it started")
        note = note.format(machine=m.clone_of) if m.grading else note
        machines.add_row(m.name, root.image or "debian-12-systemd", root.init or "systemd", note)
    parts.append(machines)
    for n, task in enumerate(sc.tasks, 1):
        body: list[RenderableType] = []
        if instructions and task.instructions.strip():
            body.append(Markdown(task.instructions))
        hints = (
            _("{n} hint(s): guestlab hint {lab} {task}").format(
                n=len(task.hints), lab=sc.id, task=task.id
            )
            + student_flag
            if task.hints
            else ""
        )
        points = _("{n} point(s).").format(n=task.points)
        body.append(Text(f"{points} {hints}", style="dim"))
        title = _("Task {n} · {id}: {title}").format(n=n, id=task.id, title=task.title)
        parts.append(Panel(Group(*body), title=title, title_align="left"))
    return Group(*parts)


def report_table(report: Report) -> RenderableType:
    """The result of one check run; what machines printed is shown as plain, clean text."""
    table = Table(
        title=f"{textsafe.markup(report.scenario)} · {textsafe.markup(report.student)}",
        title_justify="left",
    )
    table.add_column(_("task"))
    table.add_column(_("result"))
    table.add_column(_("points"), justify="right")
    table.add_column(_("expected, and what was found"))
    for task in report.tasks:
        table.add_row(
            Text(textsafe.clean(task.id)),
            _verdict(task),
            f"{task.points}/{task.max_points}",
            findings(task),
        )
    style = "bold green" if report.passed else "bold"
    score = _("Score: {score}/{max_score}").format(score=report.score, max_score=report.max_score)
    total = Text(score, style=style)
    if report.rebooted:
        return Group(
            table,
            total,
            Text(
                textsafe.clean(
                    _("Rebooted before grading: {machines}").format(
                        machines=", ".join(report.rebooted)
                    )
                )
            ),
        )
    return Group(table, total)


def findings(task: TaskResult) -> Text:
    """What a task still lacks: each failed check's name (what it expects) and, apart from
    it, what it found; first, the tasks to do before this one."""
    out = Text()
    lines: list[Text] = []
    if task.first:
        first = _("do {tasks} first").format(tasks=", ".join(task.first))
        lines.append(Text(textsafe.clean(first), style="bold"))
    if task.unproven:
        lines.append(Text(_(UNPROVEN_WHY)))
    for check in task.failing:
        line = Text(textsafe.clean(check.name))
        if check.message:
            line.append("\n  " + _("found:") + " ", style="dim")
            line.append(textsafe.clean(check.message))
        lines.append(line)
    return Text("\n").join(lines) if lines else out


#: why an `after_reboot` task graded by `check --no-reboot` earns nothing
UNPROVEN_WHY = N_("graded without the reboot it asks for: run `guestlab check` to prove it")


def _verdict(task: TaskResult) -> Text:
    if task.unproven:
        return Text(_("UNPROVEN"), style="bold yellow")
    if task.passed:
        return Text(_("PASS"), style="bold green")
    return Text(_("FAIL"), style="bold red")


def labs_table(records: Sequence[LabRecord], scores: dict[str, str]) -> Table:
    table = Table(title=_("Labs"), title_justify="left")
    # ids are what a student types: never cut; the other columns fold where they must
    table.add_column(_("scenario"), no_wrap=True)
    table.add_column(_("student"), no_wrap=True)
    for col in (_("backend"), _("status"), _("last check"), _("updated")):
        table.add_column(col, overflow="fold")
    for r in records:
        shown = _(STATUSES[r.status]) if r.status in STATUSES else r.status
        at = _("at {step}").format(step=r.step or "?")
        status = shown if r.status == "up" else f"{shown} ({at})"
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
    table = Table(title=_("Backends on this host"), title_justify="left")
    for col in (_("backend"), _("usable"), _("details"), _("how to fix")):
        table.add_column(col)
    for name, usable, detail, fix in rows:
        mark = Text(_("yes"), style="green") if usable else Text(_("no"), style="red")
        table.add_row(name, mark, detail, fix)
    return table


#: a lab's status in the state store, translated where shown
STATUSES = {"up": N_("up"), "provisioning": N_("provisioning"), "failed": N_("failed")}
#: a class's statuses, translated where they are shown (`up` is above)
CLASS_STATUSES = {"down": N_("down"), "expired": N_("expired")}


def next_steps(lab: Lab, student_flag: str) -> str:
    """What `up` suggests next; `student_flag` (` --student S` or ``) goes with every command."""
    sid, first, task = lab.scenario.id, lab.specs[-1].name, lab.scenario.tasks[0].id
    rows = [
        (_("Work in a machine:"), f"guestlab shell {sid} {first}{student_flag}"),
        (_("See your progress:"), f"guestlab check {sid}{student_flag}"),
        (_("Stuck?"), f"guestlab hint {sid} {task}{student_flag}"),
    ]
    width = max(len(label) for label, _command in rows) + 2
    return "\n" + "\n".join(f"{label:<{width}}{command}" for label, command in rows)


#: the kinds of resource a backend names in `FoundResources.other` ("network gl-...")
RESOURCE_KINDS = {"network": N_("network"), "image": N_("image"), "volume": N_("volume")}


def resource(text: str) -> str:
    """A resource as a backend names it, its kind in the reader's language."""
    kind, sep, name = text.partition(" ")
    return f"{_(RESOURCE_KINDS[kind])}{sep}{name}" if kind in RESOURCE_KINDS and sep else text
