"""The `guestlab` command: the one place that prints and picks exit codes.

Engine SDKs are imported only when a command needs a backend, so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from orchestrator import __version__, backends, textsafe
from orchestrator.classroom.cli import class_group, serve
from orchestrator.errors import ExitCode, GuestlabError, ScenarioError, UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

STEP_LABELS = {
    "image": "image ready",
    "provision": "machines created",
    "setup": "starting state applied",
    "clone": "clones taken",
    "snapshot": "starting state saved (for reset)",
    "restore": "machines restored",
}

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 checks failed, 2 usage or invalid scenario, 3 backend unavailable, "
    "4 provisioning failed, 5 lab busy or state store unusable, 130 interrupted."
)


class ConsoleReporter:
    """Shows each lifecycle step with a spinner, then a tick and its duration."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Any = None
        self._label = ""

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._label = STEP_LABELS.get(name, name)
        started = time.monotonic()
        with self.console.status(f"{self._label}...") as status:
            self._status = status
            try:
                yield
            except BaseException:
                self.console.print(f"[red]✗[/] {self._label}")
                raise
            finally:
                self._status = None
        self.console.print(
            f"[green]✓[/] {self._label} [dim]({time.monotonic() - started:.1f} s)[/]"
        )

    def line(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{self._label}: {textsafe.markup(text)}")
        else:
            self.console.print(f"[dim]{textsafe.markup(text)}[/]")


def _store() -> Any:
    from orchestrator.state import Store

    return Store()


def _student(value: str | None) -> str:
    from orchestrator.backends.base import default_student

    return value or default_student()


student_option = click.option(
    "--student",
    "-s",
    metavar="ID",
    help="The student whose lab it is (default: $GUESTLAB_STUDENT or your user name).",
)


lang_option = click.option(
    "--lang",
    metavar="TAG",
    help="Language of the lab's texts, e.g. en or pt-BR"
    " (default: $GUESTLAB_LANG, then the locale; English where a text is not translated).",
)


def _lang(option: str | None) -> str:
    from orchestrator.scenario.i18n import pick_language

    return pick_language(option)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="guestlab")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hands-on Linux virtualization labs that grade themselves.

    A student brings a lab up, works in its machines, runs `guestlab check` to see which
    tasks pass, asks for hints, resets and tears it down:

    \b
      guestlab list
      guestlab up machine-id-clone
      guestlab shell machine-id-clone clone
      guestlab check machine-id-clone
      guestlab down machine-id-clone
    """
    ctx.obj = {"debug": debug}


# -- scenarios ----------------------------------------------------------------------------
def _catalog_rows(lang: str = "en") -> list[tuple[str, Any, str]]:
    from orchestrator.scenario.catalog import discover
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file

    rows = []
    for path in discover():
        try:
            rows.append((str(path), localize(load_file(path), lang), ""))
        except ScenarioError as e:
            rows.append(
                (str(path), None, f"{len(e.problems)} problem(s); guestlab validate {path}")
            )
    return rows


@cli.command("list")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@lang_option
def list_cmd(fmt: str, lang: str | None) -> None:
    """List the scenarios guestlab can bring up.

    Scenarios are looked up in $GUESTLAB_SCENARIOS (folders separated by ':'), else in
    ./scenarios, and in the scenarios shipped with guestlab.
    """
    from orchestrator import views

    rows = _catalog_rows(_lang(lang))
    if fmt == "json":
        click.echo(json.dumps(views.catalog_json(rows), indent=2))
    else:
        out.print(views.catalog_table(rows))


@cli.command()
@click.argument("scenario", metavar="ID|PATH")
@lang_option
def show(scenario: str, lang: str | None) -> None:
    """Show a scenario: description, machines, and each task's instructions."""
    from orchestrator import views
    from orchestrator.scenario.catalog import resolve
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file

    out.print(views.scenario_view(localize(load_file(resolve(scenario)), _lang(lang))))


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def validate(paths: tuple[str, ...]) -> None:
    """Check scenario files (or folders of them) and report every problem at once.

    Each problem is printed as FILE:LINE:COLUMN: field.path: message.
    """
    from orchestrator.lab import scenario_errors
    from orchestrator.scenario.catalog import expand

    results = scenario_errors(expand(list(paths)))
    bad = 0
    for path, error in results.items():
        if error is None:
            out.print(f"[green]ok[/] {escape(str(path))}")
        else:
            bad += 1
            for problem in error.problems:
                click.echo(str(problem))
    if bad:
        raise GuestlabError(f"{bad} of {len(results)} scenario file(s) are invalid")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for editors and linters)."""
    from orchestrator.scenario.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


# -- a lab's life -------------------------------------------------------------------------
@cli.command()
@click.argument("scenario", metavar="ID|PATH")
@student_option
@click.option(
    "--backend",
    "-b",
    type=click.Choice(backends.names()),
    help="Engine to use (default: the scenario's first).",
)
@click.option("--no-build", is_flag=True, help="Fail instead of building a missing image.")
@click.option(
    "--unsafe-host-root",
    is_flag=True,
    help="Start systemd machines even where root in them is root on this host "
    "(a Docker engine without user namespaces). Only for a lab of your own.",
)
@lang_option
def up(
    scenario: str,
    student: str | None,
    backend: str | None,
    no_build: bool,
    unsafe_host_root: bool,
    lang: str | None,
) -> None:
    """Bring a lab up: create its machines, apply the starting state, take the clones.

    Running it again on a lab that is up changes nothing. If an earlier `up` was
    interrupted, it removes what that one left and starts over.
    """
    from orchestrator import lab as lifecycle
    from orchestrator import views

    lab = lifecycle.prepare(scenario, _student(student), backend, _lang(lang))
    store = _store()
    out.print(
        f"[bold]{lab.scenario.metadata.title}[/] [dim]({lab.ref.key} on {lab.backend.name})[/]"
    )
    result = lifecycle.up(
        lab,
        store,
        ConsoleReporter(out),
        build_images=not no_build,
        unsafe_host_root=unsafe_host_root,
    )
    if result.already_up:
        out.print(f"Lab {lab.scenario.id} is already up for {lab.ref.student}; nothing changed.")
    else:
        out.print(f"[green]Lab is up[/] in {sum(result.timings.values()):.1f} s.")
    out.print(views.scenario_view(lab.scenario))
    first = lab.specs[-1].name
    out.print(
        f"\nWork in a machine:  guestlab shell {lab.scenario.id} {first}\n"
        f"See your progress:  guestlab check {lab.scenario.id}\n"
        f"Stuck?              guestlab hint {lab.scenario.id} {lab.scenario.tasks[0].id}"
    )


@cli.command()
@click.argument("scenario", metavar="ID", required=False)
@student_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def status(scenario: str | None, student: str | None, fmt: str) -> None:
    """Show labs: every lab, or one scenario's labs (with their machines)."""
    from orchestrator import views

    store = _store()
    records = store.labs(scenario)
    if student:
        records = [r for r in records if r.student == student]
    scores = {}
    for r in records:
        attempts = store.attempts(r.key)
        if attempts:
            a = attempts[-1]
            scores[r.key] = f"{a['score']}/{a['max_score']} at {views.when(a['at'])}"
    if fmt == "json":
        rows = [{**r.__dict__, "last_check": scores.get(r.key)} for r in records]
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        out.print("No labs." + ("" if scenario else " Bring one up with: guestlab up ID"))
        return
    out.print(views.labs_table(records, scores))
    if scenario:
        for r in records:
            for name in r.backends:
                found = backends.get(name).find(_ref(r.scenario, r.student)).get(r.key)
                machines = ", ".join(found.machines) if found else "none"
                out.print(f"{r.key}: machines on {name}: {machines}")


def _lab_id(given: str) -> str:
    """The lab ID a command names: an ID as given, or the `metadata.id` of a scenario file
    (a user who brought a lab up from its file names it the same way)."""
    import re
    from pathlib import Path

    import yaml

    if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", given):
        return given
    path = Path(given)
    if path.is_file():
        try:
            found = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read the scenario file {given}: {exc}") from exc
        meta = found.get("metadata") if isinstance(found, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("id"), str):
            return meta["id"]
    raise UsageError(
        f"{given!r} is neither a lab ID nor a scenario file with an id",
        hint="guestlab status lists the labs that are up, by ID",
    )


def _ref(scenario: str, student: str) -> Any:
    from orchestrator.backends.base import LabRef

    return LabRef(_lab_id(scenario), student)


def _open(scenario: str, student: str | None, lang: str | None = None) -> tuple[Any, Any, Any]:
    from orchestrator.lab import open_lab

    store = _store()
    lab, record = open_lab(store, _lab_id(scenario), _student(student), _lang(lang))
    return lab, record, store


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("scenario", metavar="ID")
@click.argument("machine")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@student_option
@click.option(
    "--timeout", default=600.0, show_default=True, help="Seconds before the command is stopped."
)
def exec_cmd(
    scenario: str, machine: str, command: tuple[str, ...], student: str | None, timeout: float
) -> None:
    """Run a command as root in a lab machine: guestlab exec ID MACHINE -- CMD..."""
    lab, _record, _ = _open(scenario, student)
    _machine(lab, machine)
    res = lab.exec(lab.ref, machine, list(command), timeout=timeout)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if res.timed_out:
        err.print(f"error: the command was stopped after {timeout:g} s")
    if res.truncated:
        err.print("error: the command printed more than 1 MiB on a stream and was stopped there")
    sys.exit(res.exit_code)


def _machine(lab: Any, machine: str) -> None:
    names = [m.name for m in lab.scenario.machines]
    if machine not in names:
        raise GuestlabError(
            f"lab {lab.scenario.id} has no machine {machine}",
            hint=f"its machines: {', '.join(names)}",
        )


@cli.command()
@click.argument("scenario", metavar="ID")
@click.argument("machine", required=False)
@student_option
def shell(scenario: str, machine: str | None, student: str | None) -> None:
    """Open an interactive root shell in a lab machine (default: the last one)."""
    lab, _record, _s = _open(scenario, student)
    machine = machine or lab.specs[-1].name
    _machine(lab, machine)
    argv = lab.backend_for(machine).shell_argv(lab.ref, machine)
    err.print(f"[dim]{machine} of {lab.ref.key}; leave with `exit`[/]")
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise GuestlabError(
            f"`{argv[0]}` is needed for an interactive shell and is not installed"
        ) from None


@cli.command()
@click.argument("scenario", metavar="ID")
@student_option
@click.option("--task", "-t", "tasks", multiple=True, help="Check only this task (repeatable).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
)
@lang_option
def check(
    scenario: str, student: str | None, tasks: tuple[str, ...], fmt: str, lang: str | None
) -> None:
    """Grade the lab: which tasks pass, points, and what is still wrong.

    Exits 0 only when every checked task passes. Every attempt is recorded.
    """
    from orchestrator import lab as lifecycle
    from orchestrator import views

    lab, record, store = _open(scenario, student, lang)
    report = lifecycle.check(lab, record, store, tasks)
    if fmt == "json":
        click.echo(json.dumps(textsafe.data(report), indent=2))
    elif fmt == "junit":
        click.echo(views.junit(report))
    else:
        out.print(views.report_table(report))
    if not report["passed"]:
        sys.exit(ExitCode.CHECKS_FAILED)


@cli.command()
@click.argument("scenario", metavar="ID")
@click.argument("task")
@student_option
@lang_option
def hint(scenario: str, task: str, student: str | None, lang: str | None) -> None:
    """Show the next hint for a task (hints taken are recorded)."""
    from orchestrator import lab as lifecycle

    lab, _record, store = _open(scenario, student, lang)
    n, total, text = lifecycle.hint(lab, store, task)
    if text is None:
        out.print(f"Task {task} has no hints.")
    else:
        out.print(f"[bold]Hint {n}/{total}[/] for {task}: {escape(text)}")


@cli.command()
@click.argument("scenario", metavar="ID")
@student_option
@click.option("--task", "-t", "tasks", multiple=True, help="Solve only this task (repeatable).")
def solve(scenario: str, student: str | None, tasks: tuple[str, ...]) -> None:
    """Apply the reference solution (all tasks, or the ones named)."""
    from orchestrator import lab as lifecycle

    lab, record, store = _open(scenario, student)
    for task in lifecycle.solve(lab, record, store, tasks):
        out.print(f"[green]✓[/] solution of {task} applied")
    out.print(f"See the result: guestlab check {scenario}")


@cli.command()
@click.argument("scenario", metavar="ID")
@student_option
def reset(scenario: str, student: str | None) -> None:
    """Put every machine of the lab back into its starting state."""
    from orchestrator import lab as lifecycle

    lab, record, store = _open(scenario, student)
    lifecycle.reset(lab, record, store, ConsoleReporter(out))
    out.print(f"Lab {scenario} is back at its starting state.")


@cli.command()
@click.argument("scenario", metavar="ID")
@student_option
@click.option(
    "--backend", "-b", type=click.Choice(backends.names()), help="Also look on this backend."
)
def down(scenario: str, student: str | None, backend: str | None) -> None:
    """Remove every resource of a lab and forget it. Safe to run twice."""
    from orchestrator import teardown

    store = _store()
    ref = _ref(scenario, _student(student))
    record = store.lab(ref.key)
    names = list(
        dict.fromkeys([*(record.backends if record else []), *([backend] if backend else [])])
    )
    if not names:
        names = [n for n in backends.names() if backends.get(n).availability().usable]
    removed = teardown.down(ref, names, store)
    if not removed:
        out.print(f"Nothing of lab {ref.key} was left; it is down.")
    for name, found in removed.items():
        parts = [f"machines {', '.join(found.machines)}"] if found.machines else []
        parts += found.other
        out.print(f"[green]✓[/] removed from {name}: {'; '.join(parts)}")


@cli.command()
def gc() -> None:
    """Remove labs whose class time is up, and resources of labs the state store no longer
    knows (after a crash)."""
    from orchestrator import teardown
    from orchestrator.classroom.bulk import expire

    store = _store()
    expired = expire(store)
    for key in expired:
        out.print(f"[green]✓[/] class time is up: removed lab {key}")
    removed = teardown.gc(store)
    if not removed and not expired:
        out.print("Nothing to collect.")
    for name, labs in removed.items():
        for key, found in labs.items():
            out.print(
                f"[green]✓[/] {name}: removed {key}"
                f" ({len(found.machines)} machine(s), {len(found.other)} other)"
            )


_CONFINE_FIX = "scripts/setup.sh confines it (user namespaces); until then `up` refuses"


@cli.command()
def doctor() -> None:
    """Say which backends work on this host, and how to fix the ones that do not."""
    from orchestrator import paths, views

    rows = []
    for name in backends.names():
        try:
            b = backends.get(name)
            a = b.availability()
            risk = b.host_root_risk() if a.usable else None
            if risk:
                rows.append((name, True, f"{a.detail}; UNSAFE: {risk}", a.fix or _CONFINE_FIX))
            else:
                rows.append((name, a.usable, a.detail, a.fix))
        except GuestlabError as e:
            rows.append((name, False, str(e), e.hint or ""))
        except ImportError as e:
            rows.append(
                (
                    name,
                    False,
                    f"its Python package is missing ({e.name})",
                    f"pip install 'guestlab[{name}]'",
                )
            )
    out.print(views.doctor_table(rows))
    out.print(f"State and images: {paths.home()}")
    if not any(r[1] for r in rows):
        raise GuestlabError("no backend is usable on this host", hint="follow a fix above")


# -- classroom ----------------------------------------------------------------------------
cli.add_command(class_group)
cli.add_command(serve)


# -- images -------------------------------------------------------------------------------
@cli.group()
def image() -> None:
    """Build and list the base images that scenarios name (no container hub needed)."""


@image.command("list")
def image_list() -> None:
    """List catalog images, the cached root filesystem, and which engines have each."""
    from rich.table import Table

    from orchestrator.images.catalog import CATALOG
    from orchestrator.images.rootfs import tarball_path

    table = Table(title="Images", title_justify="left")
    for col in ("image", "description", "root filesystem", *backends.names()):
        table.add_column(col)
    for name, img in CATALOG.items():
        tar = tarball_path(name)
        cached = f"{tar.stat().st_size / 1e6:.0f} MB" if tar.exists() else "not built"
        cells = []
        for b in backends.names():
            try:
                backend = backends.get(b)
                usable = backend.availability().usable
                has = getattr(backend, "has_image", None)
                cells.append("-" if not usable or has is None else ("yes" if has(name) else "no"))
            except (GuestlabError, ImportError):
                cells.append("-")
        table.add_row(name, img.description, cached, *cells)
    out.print(table)


@image.command("build")
@click.argument("name")
@click.option(
    "--backend", "-b", type=click.Choice(backends.names()), default="docker", show_default=True
)
@click.option(
    "--mirror",
    metavar="URL",
    help="Debian mirror (default: $GUESTLAB_MIRROR, else this host's apt sources).",
)
@click.option(
    "--rebuild", is_flag=True, help="Build the root filesystem again even if it is cached."
)
def image_build(name: str, backend: str, mirror: str | None, rebuild: bool) -> None:
    """Build a catalog image from Debian packages with debootstrap and import it."""
    from orchestrator.backends import require_available
    from orchestrator.images.catalog import lookup
    from orchestrator.images.rootfs import ensure_tarball

    lookup(name)
    engine = backends.get(backend)
    require_available(engine)
    reporter = ConsoleReporter(out)
    with reporter.step(f"root filesystem of {name}"):
        tar = ensure_tarball(name, mirror=mirror, progress=reporter.line, rebuild=rebuild)
    with reporter.step(f"import into {backend}"):
        importer = getattr(engine, "import_image", None)
        if rebuild and importer is not None:
            importer(name, tar, reporter.line)
        else:
            engine.ensure_image(name, reporter.line)
    out.print(f"Image {name} is ready on {backend}.")


# -- error mapping ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map every outcome to a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="guestlab", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("error: interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.USAGE)
    except ScenarioError as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        err.print(f"error: {textsafe.markup(str(e))}")
        sys.exit(e.exit_code)
    except GuestlabError as e:
        if debug:
            traceback.print_exc()
        err.print(f"[bold red]error:[/] {textsafe.markup(str(e))}")
        if e.hint:
            err.print(f"[bold]hint:[/] {textsafe.markup(e.hint)}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print(
            "error: interrupted. What was done is recorded: run the same command again, "
            "or `guestlab down ID` to remove the lab."
        )
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as e:  # a bug: say so plainly, details only with --debug
        if debug:
            traceback.print_exc()
        err.print(
            f"[bold red]internal error:[/] {escape(type(e).__name__)}: {textsafe.markup(str(e))}"
        )
        err.print("hint: run again with --debug for the traceback, and report it")
        sys.exit(ExitCode.PROVISIONING_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
