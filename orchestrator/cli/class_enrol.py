"""`guestlab class enrol`: a class opened to self-enrolment through one link."""

from __future__ import annotations

import click
from rich.markup import escape

from orchestrator.cli import localized, options
from orchestrator.cli.console import out
from orchestrator.errors import GuestlabError
from orchestrator.messages import N_, _


@localized.command(
    "enrol",
    help=N_(
        "Open a class to self-enrolment and print its one link.\n\n"
        "A student opens the link, types a name (checked as a roster id; a name already in the"
        " class is refused) and gets a lab, from the scenario's pool when it has one ready, and"
        " their own seat. At most CAP students; each run draws a new link."
    ),
)
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@click.option("--base-url", metavar="URL", help=N_("Where `guestlab serve` is reached."))
@click.option(
    "--cap",
    type=localized.IntRange(1, 1000),
    metavar="N",
    default=40,
    show_default=True,
    help=N_("Most students the class takes."),
)
@options.backend_option()
@click.option("--close", is_flag=True, help=N_("Close the class to enrolment: the link stops."))
def class_enrol(
    scenario: str, base_url: str | None, cap: int, backend: str | None, close: bool
) -> None:
    from orchestrator.classroom import enrol

    store = options.store()
    if close:
        enrol.close_class(store, options.lab_id(scenario))
        out.print(_("Class {id} is closed to enrolment.").format(id=escape(scenario)))
        return
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise GuestlabError(_("--base-url must be the http(s) address of `guestlab serve`"))
    opening = enrol.open_class(store, scenario, backend, cap)
    click.echo(f"{base_url.rstrip('/')}/join/{opening.secret}")
