"""`show`'s kept text: the same bytes as a fresh rendering, and never kept across a change
of what decides it (the terminal's width and colours, the scenario's language)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator import shown, views
from orchestrator.scenario import cache

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "machine-id-clone.yaml"


def console(width: int, colour: bool) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        force_terminal=colour,
        color_system="truecolor" if colour else None,
        highlight=False,
        emoji=False,
    )


def show(width: int, colour: bool, lang: str = "en") -> tuple[str, int]:
    """What `show` prints on such a terminal, and how many times it rendered."""
    sc, key = cache.localized(SCENARIO, lang)
    renders: list[int] = []

    def render() -> object:
        renders.append(1)
        return views.scenario_view(sc)

    term = console(width, colour)
    shown.print_kept(term, key, render)  # type: ignore[arg-type]
    return term.file.getvalue(), len(renders)  # type: ignore[attr-defined]


def fresh(width: int, colour: bool, lang: str = "en") -> str:
    sc, _key = cache.localized(SCENARIO, lang)
    term = console(width, colour)
    term.print(views.scenario_view(sc))
    return term.file.getvalue()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))


def test_kept_text_is_what_a_fresh_rendering_prints() -> None:
    first, rendered = show(80, colour=True)
    again, rendered_again = show(80, colour=True)
    assert (rendered, rendered_again) == (1, 0)
    assert first == again == fresh(80, colour=True) and "\x1b[" in first


@pytest.mark.parametrize(
    ("width", "colour", "lang"), [(60, True, "en"), (80, False, "en"), (80, True, "pt-BR")]
)
def test_another_terminal_or_language_is_rendered_again(
    width: int, colour: bool, lang: str
) -> None:
    show(80, colour=True)
    text, rendered = show(width, colour, lang)
    assert rendered == 1 and text == fresh(width, colour, lang)


def test_a_foreign_entry_is_ignored(tmp_path: Path) -> None:
    show(80, colour=False)
    for entry in (tmp_path / "cache" / "scenarios").glob("*.json"):
        if '"text"' in entry.read_text():
            entry.write_text('{"key": "another", "text": "forged"}')
    text, rendered = show(80, colour=False)
    assert rendered == 1 and "forged" not in text
