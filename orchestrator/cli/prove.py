"""`guestlab prove`: an author's proof that a scenario is graded and solvable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from orchestrator import messages, textsafe
from orchestrator.cli import options
from orchestrator.cli.console import ConsoleReporter, err, out
from orchestrator.cli.localized import command
from orchestrator.errors import UsageError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.lab.prove import Proof


@command(
    help=N_(
        "Prove a scenario before shipping it: up; every task fails; each task passes after"
        " its own solution (through a reboot where the task asks for one); reset brings the"
        " failing state back; down leaves nothing. Exits non-zero naming the step that"
        " failed.\n\n"
        "Each run is a lab of its own (a random student id): it never meets a student's lab."
    )
)
@click.argument("scenario", metavar="FILE|ID")
@options.backend_option(N_("Prove it on this engine (default: the scenario's first)."))
@click.option(
    "--all-backends", is_flag=True, help=N_("Prove it on every backend the scenario declares.")
)
@options.format_option("text", "junit")
def prove(scenario: str, backend: str | None, all_backends: bool, fmt: str) -> None:
    from orchestrator.lab import prove as proving

    if backend and all_backends:
        raise UsageError(_("--backend and --all-backends exclude each other"))
    names = proving.declared_backends(scenario) if all_backends else [backend]
    store = options.store()
    proofs = [proving.prove(scenario, name, store, ConsoleReporter(err)) for name in names]
    if fmt == "junit":
        click.echo(proving.proofs_junit(proofs))
    else:
        out.print(proof_table(proofs))
    for proof in proofs:
        proof.raise_if_failed()


def proof_table(proofs: list[Proof]) -> Table:
    """Every step of every proof: its backend, result, seconds, and why it failed."""
    table = Table(title=f"guestlab prove {proofs[0].scenario}", title_justify="left")
    for col in (_("backend"), _("step"), _("result")):
        table.add_column(col)
    table.add_column(_("seconds"), justify="right")
    table.add_column(_("what went wrong"))
    for proof in proofs:
        for step in proof.steps:
            ok = Text(_("ok"), style="green")
            result = ok if step.ok else Text(_("FAILED"), style="bold red")
            table.add_row(
                proof.backend,
                Text(textsafe.clean(step.name)),
                result,
                messages.decimal(step.seconds),
                Text(textsafe.clean(step.detail)),
            )
    return table


#: the commands this module adds to `guestlab`
COMMANDS = (prove,)
