"""The scenarios: `list`, `show`, `validate`, `schema`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from orchestrator.cli import options
from orchestrator.cli.console import out
from orchestrator.errors import GuestlabError, ScenarioError

if TYPE_CHECKING:
    from orchestrator.scenario.model import Scenario


def _catalog_rows(lang: str = "en") -> list[tuple[str, Scenario | None, str]]:
    """Each scenario found: its path, the scenario (None if invalid) and what is wrong."""
    from orchestrator.scenario.catalog import discover
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file

    rows: list[tuple[str, Scenario | None, str]] = []
    for path in discover():
        try:
            rows.append((str(path), localize(load_file(path), lang), ""))
        except ScenarioError as e:
            rows.append(
                (str(path), None, f"{len(e.problems)} problem(s); guestlab validate {path}")
            )
    return rows


@click.command("list")
@options.format_option("table", "json")
@click.option("--long", "-l", is_flag=True, help="Also show each file and the search path.")
@options.lang_option
def list_cmd(fmt: str, long: bool, lang: str | None) -> None:
    """List the scenarios guestlab can bring up.

    An id is looked up along a search path, first match wins: `guestlab --path DIR`
    (repeatable), $GUESTLAB_PATH (folders separated by ':'), ./scenarios,
    ~/.config/guestlab/scenarios, then the library shipped with guestlab. `--long` shows
    the path and which scenarios another of the same id shadows.
    """
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


@click.command()
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@options.lang_option
def show(scenario: str, lang: str | None) -> None:
    """Show a scenario: description, machines, and each task's instructions."""
    from orchestrator import views
    from orchestrator.scenario.catalog import resolve
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file

    out.print(views.scenario_view(localize(load_file(resolve(scenario)), options.lang(lang))))


@click.command()
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


@click.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for editors and linters)."""
    from orchestrator.scenario.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


#: the commands this module adds to `guestlab`
COMMANDS = (list_cmd, show, validate, schema)
