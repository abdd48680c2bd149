"""`--help` and click's own texts in the reader's language, chosen when they are shown.

click keeps a command's help, an option's help and its epilog as given at import time; a
command here gets `help=N_("...")` (extracted by pybabel, kept in English) and the classes
below translate it when the help is printed, so the language chosen by `--lang`,
$GUESTLAB_LANG or the locale applies, whenever the module was imported. An example block
(`examples=`) is command lines, shown as written in every language.

click's own sentences ("Usage:", "No such option", "Missing argument") go through stdlib
gettext's global domain, not a language per command: `route_click` points the `_` and
`ngettext` of click's modules at guestlab's catalog, where `click_texts` marks them.
"""

from __future__ import annotations

import copy
import gettext
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import click

from orchestrator.messages import N_, _

#: click's usage pieces, as it writes them (translated where the usage line is shown)
OPTIONS_METAVAR = N_("[OPTIONS]")
COMMAND_METAVAR = N_("COMMAND [ARGS]...")


class Command(click.Command):
    """A command whose help, options' help and epilog are msgids, translated when shown."""

    def __init__(
        self,
        *args: Any,
        examples: str = "",
        help_text: Callable[[], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.examples = examples
        self._help_text = help_text

    def help_text(self) -> str:
        """The help in the current language (`help_text=` computes one that has parts)."""
        if self._help_text is not None:
            return self._help_text()
        return _(self.help) if self.help else ""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        text = inspect.cleandoc(self.help_text()).partition("\f")[0]
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(text)
        if self.examples:
            formatter.write_paragraph()
            with formatter.indentation():
                for line in inspect.cleandoc(self.examples).splitlines():
                    formatter.write(f"{' ' * formatter.current_indent}  {line}\n")

    def get_short_help_str(self, limit: int = 45) -> str:
        # click shortens a help it holds: a throwaway command holds the translated one
        short = _(self.short_help) if self.short_help else None
        shown = click.Command(self.name, help=self.help_text(), short_help=short)
        return shown.get_short_help_str(limit)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = [
            record
            for param in self.get_params(ctx)
            if not isinstance(param, click.Argument)
            and (record := help_record(param, ctx)) is not None
        ]
        if records:
            with formatter.section(_("Options")):
                formatter.write_dl(records)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(inspect.cleandoc(_(self.epilog)))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [_(p) if p in (OPTIONS_METAVAR, COMMAND_METAVAR) else p for p in pieces]


class Group(Command, click.Group):
    """A group of localized commands: its own help and its listing, translated when shown."""

    command_class = Command
    group_class = type  # click: a subgroup is of this same class

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        Command.format_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)


def help_record(param: click.Parameter, ctx: click.Context) -> tuple[str, str] | None:
    """An option's line in the help, its help and metavar (msgids, or a metavar such as
    `ID` that reads the same in every language) translated; click adds the rest
    (`[default: ...]`, through its own, routed, texts)."""
    shown = copy.copy(param)  # the parameter itself keeps its msgids for the next reader
    shown.help = _(param.help) if param.help else param.help
    shown.metavar = _(param.metavar) if param.metavar else param.metavar
    return shown.get_help_record(ctx)


def command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], Command]:
    """`click.command`, localized: `help=N_("...")`, optionally `examples="..."`."""
    return click.command(name, cls=Command, **attrs)  # type: ignore[no-any-return]


def group(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], Group]:
    """`click.group`, localized (its subcommands too, made with `.command`)."""
    return click.group(name, cls=Group, **attrs)  # type: ignore[no-any-return]


class Path(click.Path):
    """click.Path whose name in an error ("file 'x' does not exist") is translated when
    shown: click names it once, when the command's module is imported."""

    @property  # type: ignore[override]
    def name(self) -> str:
        return _(self._name)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value


class IntRange(click.IntRange):
    """click.IntRange whose name in an error ("'x' is not a valid integer range") is
    translated: click's number types name themselves in English only."""

    @property  # type: ignore[override]
    def name(self) -> str:
        return _("integer range")


class Float(click.types.FloatParamType):
    """click's float type, named in the reader's language in its errors."""

    @property  # type: ignore[override]
    def name(self) -> str:
        return _("float")


def _plural(singular: str, plural: str, n: int) -> str:
    """click's plural texts, each form an entry of its own in the catalog (`N_` marks one
    string), chosen by English's rule: the counts click gives are 1 or many."""
    return _(singular if n == 1 else plural)


#: click's modules that say something to a user, and `_` for each: the decorators name the
#: help option's text once, so it stays a msgid there and is translated when shown
def _click_modules() -> dict[ModuleType, Callable[[str], str]]:
    import click.core
    import click.decorators
    import click.exceptions
    import click.formatting
    import click.parser
    import click.shell_completion
    import click.termui
    import click.types
    import click.utils

    said = [
        click.core,
        click.exceptions,
        click.formatting,
        click.parser,
        click.shell_completion,
        click.termui,
        click.types,
        click.utils,
    ]
    return {**dict.fromkeys(said, _), click.decorators: N_}


def route_click() -> None:
    """Send click's gettext calls through guestlab's catalog (once; idempotent)."""
    for module, translate in _click_modules().items():
        if getattr(module, "_", None) in (gettext.gettext, _, N_):
            module._ = translate  # type: ignore[attr-defined]
        if getattr(module, "ngettext", None) in (gettext.ngettext, _plural):
            module.ngettext = _plural  # type: ignore[attr-defined]
