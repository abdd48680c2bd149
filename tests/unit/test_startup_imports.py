"""Start-up: what each command imports before it does its work (the modules, not a timing).

A bare `python -c pass` is the floor; every command may add click, rich and guestlab's own
light modules, and only the commands that need them the scenario format (YAML, pydantic,
Jinja2) or an engine's SDK. A listing whose files have not changed reads its cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what costs start-up most: the scenario format, engine SDKs, the web server
HEAVY = {"pydantic", "yaml", "jinja2", "docker", "requests", "urllib3", "pylxd", "vagrant"}
WEB = {"starlette", "uvicorn", "asyncssh", "markdown_it"}


def imported(args: list[str], home: Path) -> set[str]:
    """Top-level packages a `guestlab` command imports, read from -X importtime."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GUESTLAB_HOME": str(home), "GUESTLAB_PATH": str(ROOT / "scenarios")},
        timeout=120,
    )
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("import time:")]
    assert lines, res.stderr
    return {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in lines}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["status"], ["pool", "status"], ["up", "--help"], ["class", "--help"]],
    ids=" ".join,
)
def test_light_commands_import_no_format_engine_or_server(args: list[str], tmp_path: Path) -> None:
    found = imported(args, tmp_path)
    assert "orchestrator" in found and "click" in found
    assert not found & (HEAVY | WEB), f"{' '.join(args)} imports {sorted(found & (HEAVY | WEB))}"


def test_list_reads_unchanged_files_from_its_cache(tmp_path: Path) -> None:
    first = imported(["list"], tmp_path)
    assert {"pydantic", "yaml"} <= first  # the first listing validates every file
    again = imported(["list"], tmp_path)
    assert not again & (HEAVY | WEB), sorted(again & (HEAVY | WEB))


def test_a_changed_file_is_validated_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.scenario.summary import summaries

    folder = tmp_path / "sc"
    folder.mkdir()
    path = folder / "one.yaml"
    text = (ROOT / "scenarios" / "machine-id-inspect.yaml").read_text()
    path.write_text(text)
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    ((_, first, _),) = summaries([path], "en")
    path.write_text(text.replace("title: ", "title: Changed ", 1))
    ((_, second, _),) = summaries([path], "en")
    path.write_text("not: [a scenario")
    ((_, third, error),) = summaries([path], "en")
    assert first and second and second["title"] == "Changed " + first["title"]
    assert third is None and "problem" in error


def test_check_of_a_docker_lab_loads_no_other_engine_nor_the_server(tmp_path: Path) -> None:
    found = imported(["check", "machine-id-clone", "--student", "nobody"], tmp_path)
    assert not found & ({"pylxd", "vagrant"} | WEB), sorted(found & ({"pylxd", "vagrant"} | WEB))
