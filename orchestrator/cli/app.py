"""The `guestlab` group, its commands, and `main`: the one place that prints errors and
maps every outcome to an exit code.

The command modules are imported when their command runs or is listed (`--help`), so
that `guestlab list` loads none of the others; they import engine SDKs and the scenario
format only when a command needs them.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click
from rich.markup import escape

from orchestrator import __version__, messages, textsafe
from orchestrator.cli import localized, options
from orchestrator.cli.console import err
from orchestrator.errors import ExitCode, GuestlabError, ScenarioError
from orchestrator.messages import N_, _

localized.route_click()  # click's own sentences (usage, errors) from guestlab's catalog

EXIT_CODES_HELP = N_(
    "Exit codes: 0 ok, 1 checks failed, 2 usage or invalid scenario, 3 backend unavailable, "
    "4 provisioning failed, 5 lab busy or state store unusable, 130 interrupted."
)
INTERRUPTED = N_(
    "error: interrupted. What was done is recorded: run the same command again, "
    "or `guestlab down ID` to remove the lab."
)


#: each command of `guestlab` and the module of orchestrator.cli that defines it (in its
#: COMMANDS); a unit test holds this table to the modules
WHERE = {
    **dict.fromkeys(("list", "show", "validate", "new", "schema"), "catalog"),
    **dict.fromkeys(
        ("up", "status", "exec", "shell", "check", "hint", "solve", "reset", "down"), "labs"
    ),
    "prove": "prove",
    **dict.fromkeys(("doctor", "gc"), "host"),
    "image": "images",
    "serve": "serve",
    "completion": "completion",
    "link": "seat_links",
    "class": "classroom",
    "pool": "pool",
}
#: what loading a module brings with it: `gc` runs (and its help names) the collectors
#: that the class and pool modules add
ALONG = {"host": ("classroom", "pool")}


class LazyGroup(localized.Group):
    """A group whose commands are imported from their modules when first asked for, and
    which picks the language before anything is parsed or printed."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:  # the whole command line: `--help` may come before `--lang`
            typed = options.typed_in(args)
            ctx.meta[options.LANG_KEY] = typed
            messages.use(options.lang(typed))
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *WHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in WHERE:
            load(WHERE[cmd_name])
        return self.commands.get(cmd_name)


_loaded: set[str] = set()


def load(module_name: str) -> None:
    """Import a command module and add its commands, each with `--lang`."""
    if module_name in _loaded:
        return
    _loaded.add(module_name)
    # __import__, not importlib.import_module: `python -X importtime` then lists the module;
    # in English, so that what click names at import time is a msgid, translated when shown
    with messages.language(messages.ENGLISH):
        module = __import__(f"orchestrator.cli.{module_name}", fromlist=["COMMANDS"])
    for other in ALONG.get(module_name, ()):
        load(other)
    if module_name == "classroom":  # `class links` is defined beside `link`
        seat_links = __import__("orchestrator.cli.seat_links", fromlist=["class_links"])
        module.class_group.add_command(seat_links.class_links)
    if hasattr(module, "register"):
        module.register(cli)  # its group, and its collector for `gc`
    else:
        for command in module.COMMANDS:
            cli.add_command(command)
    for command in module.COMMANDS:
        options.add_lang_everywhere_in(command)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(
            _("%(prog)s, version %(version)s") % {"prog": "guestlab", "version": __version__}
        )
        ctx.exit()


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
    help=N_(
        "Hands-on Linux virtualization labs that grade themselves.\n\n"
        "A student brings a lab up, works in its machines, runs `guestlab check` to see which"
        " tasks pass, asks for hints, resets and tears it down:"
    ),
    examples="""
        guestlab list
        guestlab up machine-id-clone
        guestlab shell machine-id-clone clone
        guestlab check machine-id-clone
        guestlab down machine-id-clone
    """,
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help=N_("Show the version and exit."),
)
@click.option("--debug", is_flag=True, help=N_("Show tracebacks of errors."))
@click.option(
    "--path",
    "folders",
    multiple=True,
    type=localized.Path(file_okay=False),
    metavar="DIR",
    help=N_("Look for scenarios in DIR first (repeatable); `list --long` shows the search path."),
)
@options.root_lang_option
@click.pass_context
def cli(ctx: click.Context, debug: bool, folders: tuple[str, ...]) -> None:
    ctx.obj = {"debug": debug}
    if folders:  # through the environment, so that class workers and builders see it too
        rest = os.environ.get("GUESTLAB_PATH", "")
        os.environ["GUESTLAB_PATH"] = os.pathsep.join([*folders, *([rest] if rest else [])])


def load_all() -> click.Group:
    """`guestlab` with every command loaded (for what walks the whole tree)."""
    for module_name in sorted(set(WHERE.values())):
        load(module_name)
    return cli


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the CLI and map every outcome to a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    messages.use(options.lang(None))  # until a command's `--lang` or its lab's says otherwise
    try:
        code = cli.main(args=args, prog_name="guestlab", standalone_mode=False)
    except click.exceptions.Abort:
        err.print(_("error: interrupted"))
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.USAGE)
    except ScenarioError as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        label = _("error:")
        err.print(f"{label} {textsafe.markup(str(e))}")
        sys.exit(e.exit_code)
    except GuestlabError as e:
        _show_error(e, debug="--debug" in args)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print(_(INTERRUPTED))
        sys.exit(ExitCode.INTERRUPTED)
    except OSError as e:  # the host or an engine's socket failed (a timeout, a reset): not a bug
        _show_environment(e, debug="--debug" in args)
        sys.exit(ExitCode.PROVISIONING_FAILED)
    except Exception as e:  # a bug: say so plainly, details only with --debug
        _show_bug(e, debug="--debug" in args)
        sys.exit(ExitCode.PROVISIONING_FAILED)
    sys.exit(code if isinstance(code, int) else 0)


def _show_error(e: GuestlabError, *, debug: bool) -> None:
    """`error: <sentence>` and its hint; the traceback too with --debug."""
    if debug:
        import traceback  # only with --debug: it loads the tokenizer and linecache

        traceback.print_exc()
    label, hint = _("error:"), _("hint:")
    err.print(f"[bold red]{label}[/] {textsafe.markup(str(e))}")
    if e.hint:
        err.print(f"[bold]{hint}[/] {textsafe.markup(e.hint)}")


def _show_environment(e: OSError, *, debug: bool) -> None:
    """An engine or the host did not do what was asked (an engine's API timing out under
    load is one): what it said, and that the same command can be run again."""
    if debug:
        import traceback  # only with --debug: it loads the tokenizer and linecache

        traceback.print_exc()
    label = _("error:")
    err.print(f"[bold red]{label}[/] {escape(type(e).__name__)}: {textsafe.markup(str(e))}")
    err.print(
        _(
            "hint: the host or an engine failed (under heavy load an engine can time out);"
            " what was done is recorded: run the same command again, or `guestlab down ID`"
        )
    )


def _show_bug(e: Exception, *, debug: bool) -> None:
    """An error guestlab did not expect: its type and message; the traceback with --debug."""
    if debug:
        import traceback  # only with --debug: it loads the tokenizer and linecache

        traceback.print_exc()
    what = f"{escape(type(e).__name__)}: {textsafe.markup(str(e))}"
    label = _("internal error:")
    err.print(f"[bold red]{label}[/] {what}")
    err.print(_("hint: run again with --debug for the traceback, and report it"))
