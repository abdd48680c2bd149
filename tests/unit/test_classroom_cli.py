"""The class commands through the CLI, on an in-memory backend: failures reported, a
language for every lab, a bad roster refused with every line, help for every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.backends.contract import LabRef
from orchestrator.classroom import bulk
from orchestrator.state import Store
from tests.unit.classroom_fakes import SCENARIO, FakeBackend, use_fake_backend, wired


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    return use_fake_backend(monkeypatch)


def test_cli_reports_each_failure_and_exits_non_zero(
    fake: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    csv = tmp_path / "class.csv"
    csv.write_text("id,name,email\nann,Ann,\nbroken2,Bee,\n")
    result = CliRunner().invoke(
        wired, ["class", "up", SCENARIO, "--roster", str(csv)], standalone_mode=False
    )
    assert isinstance(result.exception, bulk.ClassError)
    assert result.exception.exit_code == 4
    assert "1 of 2 student lab(s) could not come up: broken2" in str(result.exception)
    assert "FAILED" in result.output and "failed: no space" in result.output
    status = CliRunner().invoke(wired, ["class", "status", SCENARIO, "--format", "json"])
    assert status.exit_code == 0, status.output
    assert '"lab_status": "up"' in status.output


def test_class_up_with_a_language_gives_it_to_every_students_lab(
    fake: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import messages
    from orchestrator.cli import cli

    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    csv = tmp_path / "class.csv"
    csv.write_text("id,name,email\nann,Ann,\nbob,Bob,\n")
    try:
        up = CliRunner().invoke(
            cli, ["class", "up", SCENARIO, "--roster", str(csv), "--lang", "pt"]
        )
        assert up.exit_code == 0, up.output
        assert "2/2 laboratório(s) no ar" in up.output
        hint = CliRunner().invoke(cli, ["hint", SCENARIO, "find-id", "--student", "bob"])
        assert hint.output.startswith("Dica 1/1 para find-id"), hint.output
    finally:
        messages.use(messages.ENGLISH)
    store = Store(tmp_path / "state.db")
    assert {store.lab_of(LabRef(SCENARIO, s)).lang for s in ("ann", "bob")} == {"pt-BR"}  # type: ignore[union-attr]
    store.close()


def test_cli_refuses_a_bad_roster_with_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    csv = tmp_path / "class.csv"
    csv.write_text("id,name,email\nann,,\n-x,X,\n")
    result = CliRunner().invoke(wired, ["class", "up", SCENARIO, "--roster", str(csv)])
    assert result.exit_code != 0
    assert f"{csv}:2: the name is empty" in result.output
    assert f"{csv}:3: student id '-x'" in result.output


def test_every_class_command_has_help() -> None:
    for args in (["class", "--help"], ["serve", "--help"]):
        assert CliRunner().invoke(wired, args).exit_code == 0
    for verb in ("up", "check", "export", "status", "reset", "down"):
        result = CliRunner().invoke(wired, ["class", verb, "--help"])
        assert result.exit_code == 0 and len(result.output.splitlines()) > 3, verb
