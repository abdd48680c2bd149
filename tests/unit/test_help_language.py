"""`--help` and click's own texts in the reader's language: every help is marked for the
catalog and shown translated, `--lang` counts wherever it is typed, and click's usage
errors are in Portuguese too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from babel.messages.extract import extract_from_dir
from click.testing import CliRunner, Result

from orchestrator import messages
from orchestrator.cli import app, cli, localized
from tests.english import english_in
from tests.unit.test_messages import extracted

ROOT = Path(__file__).resolve().parents[2]
#: help sentences a pt-BR reader must not see (click's, the group's, `up`'s, shared options')
ENGLISH_HELP = (
    "Usage:",
    "Options:",
    "Commands:",
    "Show this message and exit.",
    "Show the version and exit.",
    "Hands-on Linux virtualization labs",
    "Bring a lab up",
    "The student whose lab it is",
    "Language of what guestlab",
    "Engine to use",
    "Exit codes:",
    "[OPTIONS]",
    "[default:",
)
#: what click marks for translation that guestlab never lets it say: prompts, the pager,
#: an editor, progress bars, Windows, deprecations, and mistakes in a command's definition
CLICK_UNUSED = {
    "Argument {name!r} takes {nargs} values.",
    "Arguments take exactly one parameter declaration, got {length}: {decls}.",
    "Boolean option {decl!r} cannot use the same flag for true/false.",
    "Choice({choices})",
    "Confirm the action without prompting.",
    "Could not determine name for option with declarations {decls!r}",
    "DeprecationWarning: The command {name!r} is deprecated.{extra_message}",
    "DeprecationWarning: The {param_type} {name!r} is deprecated.{extra_message}",
    "Do you want to continue?",
    "Error: The two entered values do not match.",
    "Error: invalid input",
    "Name '{name}' defined twice",
    "No options defined but a name was passed ({name}). Did you mean to declare an argument"
    " instead? Did you mean to pass '--{name}'?",
    "Press any key to continue...",
    "Repeat for confirmation",
    "Unknown color {colour!r}",
    "Unknown standard stream '{name}'",
    "Value must be an iterable.",
    "Windows error: {error}",
    "d",
    "deprecated",
    "{editor}: Editing failed",
    "{editor}: Editing failed: {e}",
}


@pytest.fixture(autouse=True)
def english_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("GUESTLAB_LANG", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    yield
    messages.use(messages.ENGLISH)  # the CLI sets the language of this thread


def guestlab(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "100", **env}, prog_name="guestlab")


def commands(group: click.Group, path: str = "guestlab") -> Iterator[tuple[str, click.Command]]:
    """Every command under `group` (groups too), by its command line."""
    yield path, group
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_the_groups_and_ups_help_in_pt_br_shows_no_english() -> None:
    root = guestlab("--lang", "pt-BR", "--help")
    up = guestlab("--lang", "pt-BR", "up", "--help")
    assert root.exit_code == up.exit_code == 0, root.output + up.output
    assert "Uso: guestlab [OPÇÕES] COMANDO [ARGS]..." in root.output
    assert "Laboratórios práticos de virtualização Linux" in root.output
    assert "Comandos:" in root.output and "Códigos de saída:" in root.output
    assert "Subir um laboratório: criar as máquinas" in up.output
    assert "Mostrar esta mensagem e sair." in up.output and "[padrão:" not in up.output
    for shown in (root.output, up.output):
        flat = " ".join(shown.split())
        assert [s for s in ENGLISH_HELP if s in flat] == []
        assert english_in(shown) == []


@pytest.mark.parametrize(
    "args",
    [
        ("up", "--help", "--lang", "pt-BR"),  # after --help, which click acts on first
        ("up", "--lang=pt-BR", "--help"),
        ("class", "up", "--help", "--lang", "pt-BR"),
    ],
    ids=" ".join,
)
def test_lang_counts_wherever_it_is_typed(args: tuple[str, ...]) -> None:
    shown = guestlab(*args)
    assert shown.exit_code == 0, shown.output
    assert "Uso:" in shown.output and english_in(shown.output) == []


def test_the_environments_language_picks_the_help_too() -> None:
    assert "Uso:" in guestlab("pool", "--help", GUESTLAB_LANG="pt-BR").output
    assert "Uso:" in guestlab("pool", "--help", LANG="pt_BR.UTF-8").output
    assert guestlab("pool", "--help", LANG="C").output.startswith("Usage:")


def test_every_commands_help_is_translated() -> None:
    for line, _command in commands(app.load_all()):
        shown = guestlab("--lang", "pt-BR", *line.split()[1:], "--help")
        assert shown.exit_code == 0, (line, shown.output)
        assert english_in(shown.output) == [], line


def test_english_is_back_after_portuguese() -> None:
    guestlab("--lang", "pt-BR", "check", "--help")
    shown = guestlab("check", "--help")
    assert "Show this message and exit." in shown.output
    assert "Grade the lab: which tasks pass" in shown.output


def test_every_help_text_is_marked_for_the_catalog() -> None:
    """A help written without `N_()` would be shown in English: extraction must find it."""
    marked = extracted()
    unmarked = []
    for line, command in commands(app.load_all()):
        texts = [command.help, command.short_help, command.epilog]
        texts += [p.help for p in command.params if isinstance(p, click.Option)]
        unmarked += [(line, t) for t in texts if t and t not in marked]
        assert isinstance(command, localized.Command), f"{line} is not a localized command"
    assert unmarked == []


def test_a_usage_error_is_in_portuguese() -> None:
    wrong = guestlab("--lang", "pt-BR", "status", "--format", "xml")
    assert wrong.exit_code == 2
    assert "Erro: Valor inválido para '--format': 'xml' não é um destes:" in wrong.output
    assert "Tente 'guestlab status --help' para ver a ajuda." in wrong.output
    number = guestlab("--lang", "pt-BR", "serve", "--port", "abc")
    assert "'abc' não é um número inteiro válido." in number.output  # click's type, named
    missing = guestlab("up", "--lang", "pt-BR")
    assert "Erro: Falta o argumento 'ID|PATH'." in missing.output
    assert "Usage" not in missing.output and "Missing" not in missing.output


def test_main_speaks_the_locales_language(tmp_path: Path) -> None:
    env = {**os.environ, "LANG": "pt_BR.UTF-8", "GUESTLAB_HOME": str(tmp_path)}
    env.pop("GUESTLAB_LANG", None)
    env.pop("LC_ALL", None)
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "up", "--bogus"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert res.returncode == 2
    assert "Erro: A opção '--bogus' não existe." in res.stderr, res.stderr


def test_clicks_gettext_goes_through_guestlabs_catalog() -> None:
    import gettext

    left = [
        name
        for name, module in sys.modules.items()
        if name.startswith("click")
        and gettext.gettext in (getattr(module, "_", None), getattr(module, "ngettext", None))
    ]
    assert left == []


def test_every_click_text_a_user_can_meet_is_in_the_catalog() -> None:
    """A click that marks a new sentence fails here until orchestrator/cli/click_texts.py
    marks it too (or it is listed as one guestlab never shows)."""
    found = extract_from_dir(str(Path(click.__file__).parent), [("**.py", "python")])
    said: set[str] = set()
    for _file, _line, message, _comments, _context in found:
        said |= {message} if isinstance(message, str) else set(message)  # each plural form
    assert said >= CLICK_UNUSED, sorted(CLICK_UNUSED - said)  # the list names real texts
    missing = said - CLICK_UNUSED - extracted()
    assert missing == set(), sorted(missing)
