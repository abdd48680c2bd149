"""Start-up: what each command imports before it does its work (the modules, not a timing).

A bare `python -c pass` is the floor; every command may add click, rich and guestlab's own
light modules, and only the commands that need them the scenario format's reader and
validator (YAML, pydantic, Jinja2) or an engine's SDK. A listing whose files have not
changed reads its cache; a scenario whose file has not changed comes from the cache of
validated ones, built as the format's plain dataclasses (no YAML, pydantic or Jinja2); no
engine SDK loads before a command talks to an engine, nor the grading before `check` does.
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
SERVER = {"starlette", "uvicorn", "asyncssh"}
WEB = {*SERVER, "markdown_it"}  # only a first `show` renders Markdown


#: what reading a scenario from the cache of validated ones does without
FORMAT = {"yaml", "jinja2", "markupsafe", "pydantic", "pydantic_core"}
ENGINES = {"docker", "requests", "urllib3", "pylxd", "vagrant"}
SCENARIO = ROOT / "scenarios" / "machine-id-clone.yaml"


def modules(args: list[str], home: Path) -> set[str]:
    """Every module a `guestlab` command imports, read from -X importtime."""
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
    return {ln.rsplit("|", 1)[1].strip() for ln in lines}


def imported(args: list[str], home: Path) -> set[str]:
    """Top-level packages a `guestlab` command imports."""
    return {name.split(".")[0] for name in modules(args, home)}


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


def test_check_with_no_lab_loads_neither_the_format_nor_an_engine(tmp_path: Path) -> None:
    found = imported(["check", "machine-id-clone", "--student", "nobody"], tmp_path)
    assert "sqlite3" in found  # it opened the state store to look for the lab
    assert not found & (HEAVY | WEB), sorted(found & (HEAVY | WEB))


def test_show_of_an_unchanged_file_reads_no_yaml_pydantic_nor_templates(tmp_path: Path) -> None:
    first = imported(["show", "machine-id-clone"], tmp_path)
    assert first >= FORMAT  # the first one validates the file
    again = modules(["show", "machine-id-clone"], tmp_path)
    assert "orchestrator.scenario.model" in again  # it did build the scenario
    packages = {name.split(".")[0] for name in again}
    assert not packages & (FORMAT | ENGINES | WEB), sorted(packages & (FORMAT | ENGINES | WEB))
    assert "rich.markdown" not in again  # its text was kept (orchestrator/shown.py)


def lab_not_up(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state store holding a Docker lab of machine-id-clone whose `up` did not finish:
    `check` refuses it at its first step, which comes before its first engine call."""
    from orchestrator.backends.contract import LabRef
    from orchestrator.scenario.load import load_file
    from orchestrator.scenario.params import derive_params
    from orchestrator.state import Store

    monkeypatch.setenv("GUESTLAB_HOME", str(home))
    params = derive_params(load_file(SCENARIO), "ann")
    store = Store()
    key = LabRef("machine-id-clone", "ann").key
    store.put_lab(
        key,
        scenario="machine-id-clone",
        student="ann",
        backends=["docker"],
        scenario_path=str(SCENARIO),
        params=params,
        status="provisioning",
    )
    store.close()


@pytest.mark.parametrize(
    "args",
    [["hint", "machine-id-clone", "find-id"], ["check", "machine-id-clone"]],
    ids=" ".join,
)
def test_a_lab_opens_without_yaml_pydantic_templates_an_engine_sdk_or_grading(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_not_up(tmp_path, monkeypatch)
    imported([*args, "--student", "ann"], tmp_path)  # fills the cache
    found = modules([*args, "--student", "ann"], tmp_path)
    # it did open the lab: its scenario, and the backend that holds it
    assert {"orchestrator.scenario.model", "orchestrator.backends.docker.backend"} <= found
    packages = {name.split(".")[0] for name in found}
    assert not packages & (FORMAT | ENGINES | WEB), sorted(packages & (FORMAT | ENGINES | WEB))
    assert "orchestrator.checks" not in found  # `check` loads it after its first engine call


def test_the_command_table_names_each_modules_commands() -> None:
    import importlib

    from orchestrator.cli import app

    for module_name in set(app.WHERE.values()):
        module = importlib.import_module(f"orchestrator.cli.{module_name}")
        named = {name for name, where in app.WHERE.items() if where == module_name}
        assert {c.name for c in module.COMMANDS} == named, module_name


@pytest.mark.parametrize(("args", "own"), [(["status"], "labs"), (["list"], "catalog")])
def test_a_command_loads_only_its_own_command_module(
    args: list[str], own: str, tmp_path: Path
) -> None:
    from orchestrator.cli import app

    found = {
        m.rsplit(".", 1)[1] for m in modules(args, tmp_path) if m.startswith("orchestrator.cli.")
    }
    others = set(app.WHERE.values()) - {own}
    assert own in found and not found & others, sorted(found & others)
