"""Finding scenarios by path or id along the search path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.scenario import catalog

REPO_SCENARIOS = catalog.library_dir() / "scenarios"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ./scenarios, no user folder and no search path from the environment."""
    for name in catalog.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


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


def test_search_path_uses_cwd_scenarios(elsewhere: Path) -> None:
    assert catalog.search_path() == [REPO_SCENARIOS]
    (elsewhere / "scenarios").mkdir()
    assert catalog.search_path() == [elsewhere / "scenarios", REPO_SCENARIOS]


def test_search_path_order(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old, user = tmp_path / "new", tmp_path / "old", tmp_path / "config/guestlab/scenarios"
    for folder in (new, old, user, elsewhere / "scenarios"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("GUESTLAB_PATH", str(new))
    monkeypatch.setenv("GUESTLAB_SCENARIOS", str(old))
    folders = catalog.search_folders()
    assert [f.path for f in folders] == [new, old, elsewhere / "scenarios", user, REPO_SCENARIOS]
    assert [f.source for f in folders] == [
        "GUESTLAB_PATH",
        "GUESTLAB_SCENARIOS",
        "./scenarios",
        "user",
        "library",
    ]


def test_the_bundled_library_is_package_data() -> None:
    assert (REPO_SCENARIOS / "machine-id-clone.yaml").is_file()
    assert (catalog.library_dir() / "labs" / "machine-id-clone").is_dir()
    assert catalog.resolve("machine-id-clone") == REPO_SCENARIOS / "machine-id-clone.yaml"


def test_shadowed_lists_what_loses(dirs: tuple[Path, Path]) -> None:
    first, second = dirs
    assert catalog.shadowed() == {first / "alpha.yaml": [second / "alpha.yaml"]}


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
