"""A lab's life: `up`, `status`, `exec`, `shell`, `check`, `hint`, `solve`, `reset`, `down`."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from orchestrator import backends, messages
from orchestrator.cli import localized, options
from orchestrator.cli.console import ConsoleReporter, err, laid_out_later, out
from orchestrator.cli.localized import command
from orchestrator.errors import ExitCode, GuestlabError
from orchestrator.messages import N_, _, did_you_mean

if TYPE_CHECKING:
    from orchestrator.lab import Lab
    from orchestrator.state import LabRecord, Store


@command(
    help=N_(
        "Bring a lab up: create its machines, apply the starting state, take the clones.\n\n"
        "Running it again on a lab that is up changes nothing. If an earlier `up` was"
        " interrupted, it removes what that one left and starts over."
    )
)
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@options.student_option()
@options.backend_option()
@options.no_build_option
@click.option(
    "--unsafe-host-root",
    is_flag=True,
    help=N_(
        "Start systemd machines even where root in them is root on this host "
        "(a Docker engine without user namespaces). Only for a lab of your own."
    ),
)
@click.option(
    "--lxd-target",
    metavar="MEMBER",
    help=N_("On an LXD cluster: the member the lab's machines go to (default: LXD chooses)."),
)
@options.lang_option
@click.option("--no-pool", is_flag=True, help=N_("Make the lab now even if a pool has one ready."))
def up(
    scenario: str,
    student: str | None,
    backend: str | None,
    no_build: bool,
    unsafe_host_root: bool,
    lxd_target: str | None,
    lang: str | None,
    no_pool: bool,
) -> None:
    from orchestrator import lab as lifecycle
    from orchestrator import views
    from orchestrator.lab.placement import place
    from orchestrator.pool import claim as pool

    store = options.store()
    who = options.student(student)
    language = options.lab_language(lang, _remembered(store, scenario, who))
    messages.use(language)
    lab = lifecycle.prepare(scenario, who, backend, language)
    moved = place(lab.backends, lab.ref, lxd_target)
    where = _("{lab} on {backend}").format(lab=lab.ref.key, backend=lab.backend.name)
    out.print(f"[bold]{lab.scenario.metadata.title}[/] [dim]({where})[/]")
    if moved:
        err.print(f"[yellow]{escape(moved)}[/]")
    flag = options.student_flag(lab.ref.student)
    # laid out while the engine works (a claim waits for a clone's boot)
    instructions = laid_out_later(lambda: views.scenario_view(lab.scenario, student_flag=flag))
    result, claimed = pool.up(
        lab,
        store,
        ConsoleReporter(out),
        use_pool=not no_pool and not lxd_target,  # a pool lab is where it was made
        build_images=not no_build,
        unsafe_host_root=unsafe_host_root,
    )
    store.remember_language(lab.ref, language)
    if claimed:
        pool.refill_later(store, lab.scenario.id, lab.backend.name)
    if result.already_up:
        out.print(
            _("Lab {lab} is already up for {student}; nothing changed.").format(
                lab=lab.scenario.id, student=lab.ref.student
            )
        )
    else:
        seconds = messages.decimal(sum(result.timings.values()))
        if claimed:
            done = _("Lab is up (from the pool) in {seconds} s.").format(seconds=seconds)
        else:
            done = _("Lab is up in {seconds} s.").format(seconds=seconds)
        out.print(f"[green]{done}[/]")
    out.print(instructions())
    out.print(views.next_steps(lab, flag))


def _remembered(store: Store, scenario: str, student: str) -> str:
    """The language of the lab `up` is asked for, if it is up already (`up` again)."""
    try:
        found = store.lab_of(options.ref(scenario, student))
    except GuestlabError:  # not a lab id: `prepare` says what is wrong with it
        return ""
    return found.lang if found else ""


@command(help=N_("Show labs: every lab, or one scenario's labs (with their machines)."))
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario, required=False)
@options.student_option()
@options.format_option("table", "json")
def status(scenario: str | None, student: str | None, fmt: str) -> None:
    from orchestrator import views

    store = options.store()
    records = store.labs(scenario)
    if student:
        records = [r for r in records if r.student == student]
    languages = {r.lang for r in records}
    if len(languages) == 1:  # one lab, or labs that all speak the same: speak it too
        messages.use(options.lab_language(None, languages.pop()))
    scores = _last_scores(store, records)
    if fmt == "json":
        rows = [{**r.__dict__, "last_check": scores.get(r.key)} for r in records]
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        out.print(_("No labs.") if scenario else _("No labs. Bring one up with: guestlab up ID"))
        return
    out.print(views.labs_table(records, scores))
    if scenario:
        for r in records:
            for name in r.backends:
                found = backends.get(name).find(r.ref).get(r.key)
                machines = ", ".join(found.machines) if found else _("none")
                out.print(
                    _("{lab}: machines on {backend}: {machines}").format(
                        lab=r.key, backend=name, machines=machines
                    )
                )


def _last_scores(store: Store, records: list[LabRecord]) -> dict[str, str]:
    """Each lab's last score and when it was checked, for the labs checked at least once
    since they came up (attempts of an earlier lab of the same key stay for the record)."""
    from orchestrator import views

    scores = {}
    for r in records:
        attempts = [a for a in store.attempts(r.key) if a.at >= r.created]
        if attempts:
            last = attempts[-1]
            scores[r.key] = _("{score}/{max_score} at {when}").format(
                score=last.report.score, max_score=last.report.max_score, when=views.when(last.at)
            )
    return scores


@command(
    "exec",
    context_settings={"ignore_unknown_options": True},
    help=N_("Run a command as root in a lab machine: guestlab exec ID MACHINE -- CMD..."),
)
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@click.argument("machine")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@options.student_option()
@click.option(
    "--timeout",
    metavar="N",
    type=localized.Float(),
    default=600.0,
    show_default=True,
    help=N_("Seconds before the command is stopped."),
)
def exec_cmd(
    scenario: str, machine: str, command: tuple[str, ...], student: str | None, timeout: float
) -> None:
    from orchestrator.backends.contract import Attachable
    from orchestrator.cli import attached  # processes and terminals: `exec` and `shell` only

    lab, _record, _store = options.open_lab(scenario, student)
    _require_machine(lab, machine)
    argv = [*attached.IN_MACHINE_SHELL, *command]
    backend = lab.backend_for(machine)
    if attached.stdin_is_piped() and isinstance(backend, Attachable):
        # the input streams through to the command, as `docker exec -i` passes it
        code, stopped = attached.run_streaming(
            backend.attach_argv(lab.ref, machine, argv, tty=False), timeout
        )
        if stopped:
            err.print(
                _("error: the command was stopped after {seconds} s").format(seconds=f"{timeout:g}")
            )
        sys.exit(code)
    res = lab.exec(lab.ref, machine, argv, timeout=timeout)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if res.timed_out:
        err.print(
            _("error: the command was stopped after {seconds} s").format(seconds=f"{timeout:g}")
        )
    if res.truncated:
        err.print(_("error: the command printed more than 1 MiB on a stream and was stopped there"))
    sys.exit(res.exit_code)


def _require_machine(lab: Lab, machine: str) -> None:
    names = [m.name for m in lab.scenario.lab_machines]
    if machine not in names:
        raise GuestlabError(
            _("lab {lab} has no machine {machine}").format(lab=lab.scenario.id, machine=machine),
            hint=did_you_mean(machine, names, _("its machines: {names}")),
        )


@command(
    help=N_(
        "Open an interactive root shell in a lab machine (default: the last one).\n\n"
        "A `guestlab check` that reboots the machine ends the shell; it says so."
    )
)
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@click.argument("machine", required=False)
@options.student_option()
def shell(scenario: str, machine: str | None, student: str | None) -> None:
    from orchestrator import lab as lifecycle
    from orchestrator.cli import attached

    lab, _record, store = options.open_lab(scenario, student)
    machine = machine or lab.specs[-1].name
    _require_machine(lab, machine)
    argv = lab.backend_for(machine).shell_argv(lab.ref, machine)
    left = _("{machine} of {lab}; leave with `exit`").format(machine=machine, lab=lab.ref.key)
    err.print(f"[dim]{left}[/]")
    sys.stdout.flush()
    started = time.time()
    code = attached.run_interactive(argv)
    if lifecycle.reboots_since(store, lab, machine, started):
        err.print(
            _(
                "The shell ended: guestlab rebooted {machine} to prove that changes survive a"
                " reboot. Open a new one: guestlab shell {lab} {machine}"
            ).format(machine=machine, lab=scenario)
        )
    sys.exit(code)


@command(
    help=N_(
        "Grade the lab: which tasks pass, points, and what is still wrong.\n\n"
        "Tasks that must survive a reboot are graded after the machines they check have been"
        " restarted (shells open in them end). Exits 0 only when every checked task passes."
        " Every attempt is recorded."
    )
)
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@options.student_option()
@click.option("--task", "-t", "tasks", multiple=True, help=N_("Check only this task (repeatable)."))
@options.format_option("text", "json", "junit")
@options.no_reboot_option
@options.lang_option
def check(
    scenario: str,
    student: str | None,
    tasks: tuple[str, ...],
    fmt: str,
    no_reboot: bool,
    lang: str | None,
) -> None:
    from orchestrator import lab as lifecycle

    lab, record, store = options.open_lab(scenario, student, lang)
    report = lifecycle.check(
        lab, record, store, tasks, reboot=not no_reboot, reporter=ConsoleReporter(err)
    )
    from orchestrator import views  # after grading: rich's tables are not check's start-up

    if fmt == "json":
        click.echo(report.to_json(indent=2, clean=True))
    elif fmt == "junit":
        click.echo(report.to_junit())
    else:
        out.print(views.report_table(report))
    if not report.passed:
        sys.exit(ExitCode.CHECKS_FAILED)


@command(help=N_("Show the next hint for a task (hints taken are recorded)."))
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@click.argument("task")
@options.student_option()
@options.lang_option
def hint(scenario: str, task: str, student: str | None, lang: str | None) -> None:
    from orchestrator import lab as lifecycle

    lab, _record, store = options.open_lab(scenario, student, lang)
    n, total, text = lifecycle.hint(lab, store, task)
    if text is None:
        out.print(_("Task {task} has no hints.").format(task=task))
    else:
        which = _("Hint {n}/{total}").format(n=n, total=total)
        out.print(
            f"[bold]{which}[/] " + _("for {task}: {text}").format(task=task, text=escape(text))
        )


@command(help=N_("Apply the reference solution (all tasks, or the ones named)."))
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@options.student_option()
@click.option("--task", "-t", "tasks", multiple=True, help=N_("Solve only this task (repeatable)."))
def solve(scenario: str, student: str | None, tasks: tuple[str, ...]) -> None:
    from orchestrator import lab as lifecycle

    lab, record, store = options.open_lab(scenario, student)
    for task in lifecycle.solve(lab, record, store, tasks):
        out.print("[green]✓[/] " + _("solution of {task} applied").format(task=task))
    out.print(_("See the result: guestlab check {lab}").format(lab=scenario))


@command(help=N_("Put every machine of the lab back into its starting state."))
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@options.student_option()
def reset(scenario: str, student: str | None) -> None:
    from orchestrator import lab as lifecycle

    lab, record, store = options.open_lab(scenario, student)
    lifecycle.reset(lab, record, store, ConsoleReporter(out))
    out.print(_("Lab {lab} is back at its starting state.").format(lab=scenario))


@command(help=N_("Remove every resource of a lab and forget it. Safe to run twice."))
@click.argument("scenario", metavar="ID", shell_complete=options.complete_scenario)
@options.student_option()
@options.backend_option(N_("Also look on this backend."))
def down(scenario: str, student: str | None, backend: str | None) -> None:
    from orchestrator import teardown, views

    store = options.store()
    ref = options.ref(scenario, options.student(student))
    record = store.lab_of(ref)
    if record:
        messages.use(options.lab_language(None, record.lang))
    names = list(
        dict.fromkeys([*(record.backends if record else []), *([backend] if backend else [])])
    )
    if not names:
        names = [n for n in backends.names() if backends.get(n).availability().usable]
    removed = teardown.down(ref, names, store)
    if not removed:
        out.print(_("Nothing of lab {lab} was left; it is down.").format(lab=ref.key))
    for name, found in removed.items():
        parts = (
            [_("machines {names}").format(names=", ".join(found.machines))]
            if found.machines
            else []
        )
        parts += [views.resource(other) for other in found.other]
        what = "; ".join(parts)
        out.print(
            "[green]✓[/] " + _("removed from {backend}: {what}").format(backend=name, what=what)
        )


#: the commands this module adds to `guestlab`
COMMANDS = (up, status, exec_cmd, shell, check, hint, solve, reset, down)
