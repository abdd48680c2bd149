"""`guestlab completion SHELL`: the script that makes the shell complete guestlab's words."""

from __future__ import annotations

import click

from orchestrator.cli.localized import command
from orchestrator.messages import N_, _

SHELLS = ("bash", "zsh", "fish")


@command(
    help=N_("Print the completion script for SHELL (bash, zsh or fish)."),
    examples="""
        bash: eval "$(guestlab completion bash)"   # ~/.bashrc
        zsh:  eval "$(guestlab completion zsh)"    # ~/.zshrc
        fish: guestlab completion fish > ~/.config/fish/completions/guestlab.fish
    """,
)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    cls = get_completion_class(shell)
    if cls is None:  # click knows every name in SHELLS; a newer click may drop one
        raise click.UsageError(_("this click has no {shell} completion").format(shell=shell))
    script = cls(root.command, {}, "guestlab", "_GUESTLAB_COMPLETE").source()
    click.echo(script)


#: the commands this module adds to `guestlab`
COMMANDS = (completion,)
