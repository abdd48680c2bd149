"""Finding scenarios by path or id along the search path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import orchestrator
from orchestrator.errors import UsageError
from orchestrator.scenario import catalog

REPO_SCENARIOS = Path(orchestrator.__file__).resolve().parent.parent / "scenarios"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        folder.mkdir()
    (first / "alpha.yaml").write_text("a\n")
    (second / "alpha.yaml").write_text("shadowed\n")
    (second / "beta.yml").write_text("b\n")
    (second / "notes.txt").write_text("not a scenario\n")
    monkeypatch.setenv("GUESTLAB_SCENARIOS", os.pathsep.join([str(first), str(second)]))
    return first, second


def test_search_path_from_environment(dirs: tuple[Path, Path]) -> None:
    assert catalog.search_path() == [*dirs, REPO_SCENARIOS]


def test_search_path_deduplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUESTLAB_SCENARIOS", os.pathsep.join([str(tmp_path), str(tmp_path), str(REPO_SCENARIOS)])
    )
    assert catalog.search_path() == [tmp_path, REPO_SCENARIOS]


def test_search_path_uses_cwd_scenarios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUESTLAB_SCENARIOS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert catalog.search_path() == [REPO_SCENARIOS]
    (tmp_path / "scenarios").mkdir()
    assert catalog.search_path() == [tmp_path / "scenarios", REPO_SCENARIOS]


def test_resolve_id_first_folder_wins(dirs: tuple[Path, Path]) -> None:
    first, second = dirs
    assert catalog.resolve("alpha") == first / "alpha.yaml"
    assert catalog.resolve("beta") == second / "beta.yml"


def test_resolve_path(dirs: tuple[Path, Path]) -> None:
    path = dirs[1] / "alpha.yaml"
    assert catalog.resolve(str(path)) == path


def test_resolve_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text("x\n")
    assert catalog.resolve("x.yaml") == Path("x.yaml")


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such scenario file"):
        catalog.resolve(str(tmp_path / "nope.yaml"))


def test_resolve_not_yaml(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError, match="not a scenario file"):
        catalog.resolve(str(dirs[1] / "notes.txt"))


def test_resolve_unknown_id(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError) as caught:
        catalog.resolve("gamma")
    message = str(caught.value)
    assert "unknown scenario `gamma`" in message
    assert str(dirs[0]) in message and str(dirs[1]) in message
    assert caught.value.hint is not None and "guestlab list" in caught.value.hint


def test_discover(dirs: tuple[Path, Path]) -> None:
    found = [p for p in catalog.discover() if p.parent != REPO_SCENARIOS]
    assert found == [dirs[0] / "alpha.yaml", dirs[1] / "beta.yml"]


def test_discover_skips_missing_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTLAB_SCENARIOS", str(tmp_path / "nowhere"))
    assert all(p.parent == REPO_SCENARIOS for p in catalog.discover())


def test_expand(dirs: tuple[Path, Path]) -> None:
    first, second = dirs
    got = catalog.expand([str(second), str(first / "alpha.yaml"), str(second / "beta.yml")])
    assert got == [second / "alpha.yaml", second / "beta.yml", first / "alpha.yaml"]


def test_expand_accepts_ids(dirs: tuple[Path, Path]) -> None:
    assert catalog.expand(["alpha"]) == [dirs[0] / "alpha.yaml"]


def test_expand_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no scenario files"):
        catalog.expand([str(tmp_path)])


def test_expand_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        catalog.expand([str(tmp_path / "gone.yaml")])
