"""The cache of validated scenarios: used only under its exact key, never for an invalid
file, and never trusted when an entry is corrupt or another's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.scenario import cache, load

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "scenarios" / "machine-id-inspect.yaml"


@pytest.fixture
def validations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A private cache; each full validation of a file is recorded."""
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    calls: list[Path] = []
    real = load.load_bytes

    def counted(raw: bytes, path: Path) -> object:
        calls.append(path)
        return real(raw, path)

    monkeypatch.setattr(load, "load_bytes", counted)
    return calls


def scenario_file(tmp_path: Path, text: str | None = None) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir(exist_ok=True)
    path = folder / "one.yaml"
    path.write_text(SOURCE.read_text() if text is None else text)
    return path


def entries() -> list[Path]:
    return sorted(cache.folder().glob("*.json"))


def test_an_unchanged_file_is_built_from_the_cache_equal_to_the_validated(
    tmp_path: Path, validations: list[Path]
) -> None:
    path = scenario_file(tmp_path)
    first, key = cache.localized(path, "pt-BR")
    again, same_key = cache.localized(path, "pt-BR")
    assert len(validations) == 1 and key == same_key
    assert again == first and again is not first
    assert again.metadata.title == first.metadata.title != load.load_file(path).metadata.title


def test_one_changed_byte_is_validated_again(tmp_path: Path, validations: list[Path]) -> None:
    path = scenario_file(tmp_path)
    first, _ = cache.localized(path, "en")
    text = path.read_text()
    where = text.index("title: ") + len("title: ")
    path.write_text(text[:where] + "X" + text[where + 1 :])  # one byte replaced
    second, _ = cache.localized(path, "en")
    assert len(validations) == 2
    assert second.metadata.title == "X" + first.metadata.title[1:]


@pytest.mark.parametrize("content", ["{not json", "[]", '{"key": 1}', "\x00\xff"])
def test_a_corrupt_entry_is_ignored_and_written_anew(
    tmp_path: Path, validations: list[Path], content: str
) -> None:
    path = scenario_file(tmp_path)
    first, _ = cache.localized(path, "en")
    (entry,) = entries()
    entry.write_text(content)
    again, _ = cache.localized(path, "en")
    assert again == first and len(validations) == 2
    assert json.loads(entry.read_text())["scenario"]["metadata"]["title"] == first.metadata.title


def test_an_entry_under_another_key_or_of_another_shape_is_not_trusted(
    tmp_path: Path, validations: list[Path]
) -> None:
    path = scenario_file(tmp_path)
    first, _ = cache.localized(path, "en")
    (entry,) = entries()
    good = json.loads(entry.read_text())
    forged = {**json.loads(entry.read_text()), "key": good["key"] + "x"}
    forged["scenario"]["metadata"]["title"] = "forged"
    entry.write_text(json.dumps(forged))
    assert cache.localized(path, "en")[0].metadata.title == first.metadata.title
    # the right key, but a field the format does not have: another program's entry
    odd = json.loads(entry.read_text())
    odd["scenario"]["metadata"]["unknown"] = 1
    entry.write_text(json.dumps(odd))
    assert cache.localized(path, "en")[0] == first
    assert len(validations) == 3 and json.loads(entry.read_text()) == good


def test_an_invalid_scenario_is_never_cached(tmp_path: Path, validations: list[Path]) -> None:
    path = scenario_file(tmp_path, SOURCE.read_text().replace("kind: Scenario", "kind: Nope"))
    for _ in range(2):
        with pytest.raises(ScenarioError):
            cache.localized(path, "en")
    assert len(validations) == 2 and entries() == []


def test_the_cache_keeps_at_most_its_bound(
    tmp_path: Path, validations: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    path = scenario_file(tmp_path)
    for lang in ("en", "pt-BR", "de", "fr"):  # a key per language
        cache.localized(path, lang)
    assert len(entries()) == 2


def test_a_cached_scenario_loads_no_yaml_templates_or_pydantic(tmp_path: Path) -> None:
    """In a new process, a hit loads neither YAML nor Jinja2 nor pydantic: the format's
    types are plain dataclasses, built from the entry."""
    import os
    import subprocess
    import sys

    path = scenario_file(tmp_path)
    code = (
        "import sys; from pathlib import Path; from orchestrator.scenario import cache;"
        f"sc, _ = cache.localized(Path({str(path)!r}), 'en');"
        "print(*(name in sys.modules for name in ('pydantic', 'pydantic_core', 'yaml', 'jinja2')))"
    )
    env = {**os.environ, "GUESTLAB_HOME": str(tmp_path / "home")}

    def run() -> str:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    assert run() == ["True"] * 4  # the first load validates
    assert run() == ["False"] * 4


def test_without_the_formats_source_nothing_is_cached(
    tmp_path: Path, validations: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "_schema", [])
    monkeypatch.setattr(cache, "SCHEMA_SOURCES", (*cache.SCHEMA_SOURCES, "missing.py"))
    path = scenario_file(tmp_path)
    first, _ = cache.localized(path, "en")
    again, _ = cache.localized(path, "en")
    assert again == first and len(validations) == 2 and entries() == []
