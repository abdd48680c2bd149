"""Finding the Debian mirror in a host's apt configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.images.mirror import choose_mirror, host_mirror


def apt(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_deb822_sources_skip_security_and_other_repositories(tmp_path: Path) -> None:
    d = apt(
        tmp_path,
        {
            "sources.list.d/a-other.sources": "Types: deb\nURIs: http://repo.example/node\nSuites: nodistro\n",
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
            ),
        },
    )
    assert host_mirror(d) == "http://mirror.example/debian"


def test_one_line_format_with_options(tmp_path: Path) -> None:
    d = apt(
        tmp_path,
        {
            "sources.list": "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
        },
    )
    assert host_mirror(d) == "http://mirror.example/debian"


def test_disabled_entries_are_ignored(tmp_path: Path) -> None:
    d = apt(
        tmp_path,
        {
            "sources.list.d/d.sources": "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nEnabled: no\n"
        },
    )
    assert host_mirror(d) is None


def test_option_wins_and_absence_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_mirror("http://given.example/debian") == "http://given.example/debian"
    monkeypatch.setenv("GUESTLAB_MIRROR", "http://env.example/debian")
    assert choose_mirror(None) == "http://env.example/debian"
    monkeypatch.delenv("GUESTLAB_MIRROR")
    monkeypatch.setattr("orchestrator.images.mirror.host_mirror", lambda: None)
    with pytest.raises(UsageError, match="no Debian mirror"):
        choose_mirror(None)
