"""The options that several commands share, defined once, and the small helpers that turn
what a user typed into the objects a command needs (a lab ID, a lab, the state store).

Helpers import what they need when they run, so that `guestlab --help` loads neither the
scenario format nor any engine SDK.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orchestrator import backends, messages
from orchestrator.cli import localized
from orchestrator.errors import UsageError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.backends.contract import LabRef
    from orchestrator.lab import Lab
    from orchestrator.state import LabRecord, Store

F = TypeVar("F", bound=Callable[..., Any])
LAB_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def student_option(*, required: bool = False) -> Callable[[F], F]:
    """`--student/-s ID`: whose lab; optional (with its default) unless `required`."""
    return click.option(
        "--student",
        "-s",
        required=required,
        metavar="ID",
        help=N_("The student whose lab it is.")
        if required
        else N_("The student whose lab it is (default: $GUESTLAB_STUDENT or your user name)."),
    )


#: where the `--lang` a user typed is kept for the command (`None` when not typed)
LANG_KEY = "guestlab.lang"
LANG_HELP = N_(
    "Language of what guestlab and the lab's texts say, e.g. en or pt-BR (default: the"
    " language the lab was brought up in, then $GUESTLAB_LANG, then the locale)."
)


def _speak(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Runs while the command line is parsed, before the command: its errors are in the
    language asked for. A lab's remembered language is applied when the lab is opened."""
    if value is None:  # not typed here: the root's choice (`typed_in`) stands
        return None
    ctx.meta[LANG_KEY] = value
    messages.use(lang(value))
    return value


def typed_in(args: list[str]) -> str | None:
    """The last `--lang TAG` (or `--lang=TAG`) of a command line, before any `--`: read
    before click parses it, so that `--help` and click's errors are in that language."""
    typed = None
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            break
        if arg == "--lang":
            typed = next(rest, None)
        elif arg.startswith("--lang="):
            typed = arg.partition("=")[2]
    return typed


def lang_parameter(*, expose: bool) -> click.Option:
    """`--lang TAG`; `expose` passes it to the command as `lang`."""
    return click.Option(
        ["--lang"], metavar="TAG", callback=_speak, expose_value=expose, help=LANG_HELP
    )


#: `--lang TAG`, passed to the command as `lang`
lang_option = click.option("--lang", metavar="TAG", callback=_speak, help=LANG_HELP)
#: `guestlab --lang TAG COMMAND`: the language of everything after it
root_lang_option = click.option(
    "--lang", metavar="TAG", callback=_speak, expose_value=False, help=LANG_HELP
)


def add_lang_everywhere_in(command: click.Command) -> None:
    """Give `command`, or every command under it, a `--lang` (not passed to it: the chosen
    language is the process's, `messages.current()`), unless it declares its own."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_lang_everywhere_in(sub)
    elif not any(p.name == "lang" for p in command.params):
        command.params.append(lang_parameter(expose=False))


def backend_option(
    help_text: str | None = N_("Engine to use (default: the scenario's first)."),
    default: str | None = None,
) -> Callable[[F], F]:
    """`--backend/-b NAME`, one of the registered engines."""
    return click.option(
        "--backend",
        "-b",
        type=click.Choice(backends.names()),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def format_option(*choices: str) -> Callable[[F], F]:
    """`--format`, passed to the command as `fmt`; the first choice is the default."""
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True
    )


def parallel_option(default: int, help_text: str) -> Callable[[F], F]:
    """`--parallel/-j N`: how many labs a class command works on at the same time
    (`help_text` marked with `N_` where it is written)."""
    return click.option(
        "--parallel",
        "-j",
        type=localized.IntRange(1, 64),
        metavar="N",
        default=default,
        show_default=True,
        help=help_text,
    )


no_build_option = click.option(
    "--no-build", is_flag=True, help=N_("Fail instead of building a missing image.")
)

no_reboot_option = click.option(
    "--no-reboot",
    is_flag=True,
    help=N_(
        "Grade the current state without restarting machines: tasks that must survive "
        "a reboot are then reported unproven (not passed)."
    ),
)


def store() -> Store:
    """The state store, opened when a command needs it."""
    from orchestrator.state import Store

    return Store()


def student(value: str | None) -> str:
    """The student a command is about: the one given, else the default one."""
    from orchestrator.backends.contract import default_student

    return value or default_student()


def lang(option: str | None) -> str:
    """The language of the lab's texts: the option, else the environment's."""
    from orchestrator.scenario.i18n import pick_language

    return pick_language(option)


def typed_lang() -> str | None:
    """The `--lang` typed for the running command, if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(LANG_KEY) if ctx else None


def lab_language(option: str | None, remembered: str) -> str:
    """A lab's language: `--lang` typed, else the one it was brought up in, else the
    environment's ($GUESTLAB_LANG, then the locale)."""
    typed = option or typed_lang()
    if typed:
        return lang(typed)
    return remembered or lang(None)


def student_flag(student_id: str) -> str:
    """` --student S` for the commands guestlab suggests, when S is not the default one."""
    from orchestrator.backends.contract import default_student

    return "" if student_id == default_student() else f" --student {student_id}"


def lab_id(given: str) -> str:
    """The lab ID a command names: an ID as given, or the `metadata.id` of a scenario file
    (a user who brought a lab up from its file names it the same way)."""
    if LAB_ID.fullmatch(given):
        return given
    path = Path(given)
    if path.is_file():
        import yaml  # only for a file: an ID, the usual case, needs no YAML reader

        try:
            found = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(
                _("cannot read the scenario file {file}: {error}").format(file=given, error=exc)
            ) from exc
        meta = found.get("metadata") if isinstance(found, dict) else None
        found_id = meta.get("id") if isinstance(meta, dict) else None
        # the id names files under the state store: only a valid one is taken
        if isinstance(found_id, str) and LAB_ID.fullmatch(found_id):
            return found_id
    raise UsageError(
        _("{given} is neither a lab ID nor a scenario file with an id").format(given=repr(given)),
        hint=_("guestlab status lists the labs that are up, by ID"),
    )


def ref(scenario: str, student_id: str) -> LabRef:
    """The lab of `student_id` that `scenario` (an ID or a scenario file) names."""
    from orchestrator.backends.contract import LabRef

    return LabRef(lab_id(scenario), student_id)


def open_lab(
    scenario: str, student_id: str | None, language: str | None = None
) -> tuple[Lab, LabRecord, Store]:
    """A lab that is up, its record, and the open state store; from here on guestlab speaks
    the lab's language (`lab_language`)."""
    from orchestrator.backends.contract import LabRef

    opened = store()
    ref_ = LabRef(lab_id(scenario), student(student_id))
    found = opened.require_lab(ref_)  # before the lifecycle and the scenario format load
    chosen = lab_language(language, found.lang)
    messages.use(chosen)
    from orchestrator.lab import open_lab as open_recorded

    lab, record = open_recorded(opened, ref_.scenario, ref_.student, chosen)
    return lab, record, opened


def complete_scenario(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of a scenario id: the ids on the search path."""
    from click.shell_completion import CompletionItem

    from orchestrator.scenario.catalog import discover

    return [CompletionItem(p.stem) for p in discover() if p.stem.startswith(incomplete)]
