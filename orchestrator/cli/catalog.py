"""The scenarios: `list`, `show`, `validate`, `schema`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from orchestrator.cli import options
from orchestrator.cli.console import out
from orchestrator.cli.localized import Path as PathType
from orchestrator.cli.localized import command
from orchestrator.errors import GuestlabError, ScenarioError
from orchestrator.messages import N_, _


def _catalog_rows(lang: str = "en") -> list[tuple[str, dict[str, Any] | None, str]]:
    """Each scenario found: its path, its summary (None if invalid) and what is wrong."""
    from orchestrator.scenario.catalog import discover
    from orchestrator.scenario.summary import summaries

    return summaries(discover(), lang)


@command(
    "list",
    help=N_(
        "List the scenarios guestlab can bring up.\n\n"
        "An id is looked up along a search path, first match wins: `guestlab --path DIR`"
        " (repeatable), $GUESTLAB_PATH (folders separated by ':'), ./scenarios,"
        " ~/.config/guestlab/scenarios, then the library shipped with guestlab. `--long` shows"
        " the path and which scenarios another of the same id shadows."
    ),
)
@options.format_option("table", "json")
@click.option("--long", "-l", is_flag=True, help=N_("Also show each file and the search path."))
@options.lang_option
def list_cmd(fmt: str, long: bool, lang: str | None) -> None:
    from orchestrator import views
    from orchestrator.scenario.catalog import search_folders, shadowed

    rows = _catalog_rows(options.lang(lang))
    if fmt == "json":
        click.echo(json.dumps(views.catalog_json(rows), indent=2))
        return
    out.print(views.catalog_table(rows, long=long))
    if long:
        folders = [(str(f.path), f.source) for f in search_folders()]
        hidden = {str(w): [str(x) for x in losers] for w, losers in shadowed().items()}
        out.print(views.search_path_table(folders, hidden))


@command(
    help=N_(
        "Show a scenario: description, machines, and each task's instructions.\n\n"
        "`--format json` prints the scenario as guestlab read it (defaults filled in, texts in"
        " the chosen language), for editors and scripts."
    )
)
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@options.format_option("text", "json")
@options.lang_option
def show(scenario: str, fmt: str, lang: str | None) -> None:
    from orchestrator import shown, views
    from orchestrator.scenario import cache
    from orchestrator.scenario.catalog import resolve
    from orchestrator.scenario.model_base import dump

    sc, key = cache.localized(resolve(scenario), options.lang(lang))
    if fmt == "json":
        click.echo(json.dumps(dump(sc), indent=2))
    else:
        shown.print_kept(out, key, lambda: views.scenario_view(sc))


@command(
    help=N_(
        "Check scenario files (or folders of them) and report every problem at once.\n\n"
        "Each problem is printed as FILE:LINE:COLUMN: field.path: message; `--format json`"
        " prints [{file, valid, problems: [{file, line, column, path, message}]}] for editors"
        " and CI. The exit code is 2 when any file is invalid."
    )
)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@options.format_option("text", "json")
def validate(paths: tuple[str, ...], fmt: str) -> None:
    from orchestrator.lab import scenario_errors
    from orchestrator.scenario.catalog import expand

    results = scenario_errors(expand(list(paths)))
    bad = sum(1 for error in results.values() if error is not None)
    if fmt == "json":
        click.echo(json.dumps([_validation(p, e) for p, e in results.items()], indent=2))
    for path, error in results.items() if fmt == "text" else ():
        if error is None:
            ok = _("ok")
            out.print(f"[green]{ok}[/] {escape(str(path))}")
        else:
            for problem in error.problems:
                click.echo(str(problem))
    if bad:
        raise GuestlabError(
            _("{bad} of {total} scenario file(s) are invalid").format(bad=bad, total=len(results))
        )


def _validation(path: Path, error: ScenarioError | None) -> dict[str, object]:
    problems = [dataclasses.asdict(p) for p in error.problems] if error else []
    return {"file": str(path), "valid": error is None, "problems": problems}


@command(
    help=N_(
        "Write a scenario skeleton to start from: one machine, one task with its checks and"
        " solution, a pt-BR translation, and its labs/ID/ folder. It validates as written;"
        " `guestlab prove` then shows it is solvable."
    )
)
@click.argument("scenario_id", metavar="ID")
@click.option(
    "--dir",
    "folder",
    type=PathType(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help=N_("Where to write scenarios/ID.yaml and labs/ID/."),
)
@click.option(
    "--title", metavar=N_("TITLE"), help=N_("The scenario's title (default: from the id).")
)
def new(scenario_id: str, folder: Path, title: str | None) -> None:
    from orchestrator.lab import scenario_errors
    from orchestrator.scenario.skeleton import write_skeleton

    written = write_skeleton(scenario_id, folder, title)
    for path in written:
        out.print(_("wrote {file}").format(file=escape(str(path))))
    error = scenario_errors([written[0]])[written[0]]
    if error is not None:  # a skeleton guestlab cannot read would be a bug of ours
        raise error
    valid = _("valid.")
    then = _("Next: edit it, then `guestlab validate {file}`").format(file=escape(str(written[0])))
    out.print(f"[green]{valid}[/] {then}")


@command(help=N_("Print the JSON Schema of the scenario format (for editors and linters)."))
def schema() -> None:
    from orchestrator.scenario.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


#: the commands this module adds to `guestlab`
COMMANDS = (list_cmd, show, validate, new, schema)
