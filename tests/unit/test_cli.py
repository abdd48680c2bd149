"""The CLI without an engine: help, catalog, validation, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
VERBS = [
    "list",
    "show",
    "validate",
    "schema",
    "up",
    "status",
    "exec",
    "shell",
    "check",
    "hint",
    "solve",
    "doctor",
    "reset",
    "down",
    "gc",
    "image",
]


def run(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_help_lists_every_verb_and_the_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for verb in VERBS:
        assert f"  {verb} " in out or f"  {verb}\n" in out, verb
    assert "130 interrupted" in " ".join(out.split())


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = __import__("click.testing").testing.CliRunner().invoke(cli, [verb, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 3


def test_help_imports_no_engine_sdk() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['guestlab', '--help']\n"
        "try:\n    runpy.run_module('orchestrator.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = [m for m in ('docker', 'pylxd', 'vagrant') if m in sys.modules]\n"
        "print('loaded:', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip().endswith("loaded: []"), proc.stdout + proc.stderr


def test_list_json_has_the_catalog() -> None:
    code, out, _ = run("list", "--format", "json")
    assert code == 0
    entry = next(e for e in json.loads(out) if e.get("id") == "machine-id-clone")
    assert entry["backends"][0] == "docker" and entry["max_score"] > 0


def test_show_prints_tasks_and_instructions() -> None:
    code, out, _ = run("show", "machine-id-clone")
    assert code == 0
    assert "Task 1" in out and "dbus-uuidgen" in out


def test_schema_is_json_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert "machines" in schema["properties"]


def test_validate_reports_every_problem_with_positions(tmp_path: Path) -> None:
    bad = tmp_path / "scenarios" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(
        "apiVersion: guestlab/v1\n"
        "kind: Scenario\n"
        "metadata: {id: bad, title: Bad}\n"
        "machines:\n"
        "  - name: m\n"
        "    colour: red\n"
        "tasks:\n"
        "  - id: t\n"
        "    title: T\n"
        "    checks:\n"
        "      - machine: ghost\n"
        "        run: 'true'\n"
    )
    code, out, err = run("validate", str(bad))
    assert code == 2
    lines = [line for line in out.splitlines() if line.startswith(str(bad))]
    assert any(":6:5: machines.0.colour:" in line for line in lines), out
    assert any("ghost" in line and ":11:" in line for line in lines), out
    assert "1 of 1 scenario file(s) are invalid" in err


def test_validate_the_shipped_library_is_clean() -> None:
    code, out, _ = run("validate", "scenarios")
    assert code == 0, out


def test_unknown_lab_is_a_usage_error_with_a_hint(tmp_path: Path) -> None:
    code, _, err = run("check", "machine-id-clone", "--student", "nobody-here")
    assert code == 2
    assert "no lab machine-id-clone for student nobody-here" in err
    assert "guestlab up machine-id-clone" in err


def test_a_scenario_file_names_its_lab() -> None:
    code, _, err = run("check", "scenarios/machine-id-clone.yaml", "--student", "nobody-here")
    assert code == 2
    assert "no lab machine-id-clone for student nobody-here" in err


@pytest.mark.parametrize("given", ["/etc/passwd", "no/such/file.yaml", "Bad ID"])
def test_what_is_neither_an_id_nor_a_scenario_file_is_refused(given: str) -> None:
    code, _, err = run("down", given, "--student", "nobody-here")
    assert code == 2
    assert "neither a lab ID nor a scenario file" in err and "Traceback" not in err


def test_a_scenario_file_with_an_invalid_id_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata:\n  id: ../../escape\n")
    code, _, err = run("down", str(bad), "--student", "nobody-here")
    assert code == 2 and "neither a lab ID nor a scenario file" in err


def test_unknown_scenario_names_where_it_looked() -> None:
    code, _, err = run("show", "no-such-lab")
    assert code == 2 and "no-such-lab" in err and "Traceback" not in err


def test_bad_option_is_exit_2() -> None:
    assert run("up", "machine-id-clone", "--backend", "nope")[0] == 2


def test_main_maps_interrupt_to_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(**_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["list"])
    assert exc.value.code == 130


def test_path_option_puts_a_folder_first_and_list_long_shows_the_shadowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.scenario.catalog import library_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "machine-id-clone.yaml").write_text(
        (library_dir() / "scenarios" / "machine-id-clone.yaml").read_text()
    )
    monkeypatch.delenv("GUESTLAB_PATH", raising=False)
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--path", str(mine), "list", "--long"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert f"{mine / 'machine-id-clone.yaml'}" in res.stdout
    assert "is shadowed by" in res.stdout


def test_completion_scripts_complete_scenario_ids() -> None:
    for shell in ("bash", "zsh", "fish"):
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "completion", shell],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0 and "_GUESTLAB_COMPLETE" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "_GUESTLAB_COMPLETE": "bash_complete",
            "COMP_WORDS": "guestlab up machine-id-c",
            "COMP_CWORD": "2",
        },
    )
    assert "plain,machine-id-clone" in res.stdout.splitlines()


def test_an_engine_timing_out_is_a_sentence_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import orchestrator.cli.catalog as catalog_cli

    class ReadTimeout(OSError):  # what requests raises when an engine's API does not answer
        pass

    def slow(*_a: object, **_k: object) -> None:
        raise ReadTimeout("UnixHTTPConnectionPool(host='localhost'): Read timed out.")

    monkeypatch.setattr(catalog_cli, "_catalog_rows", slow)
    with pytest.raises(SystemExit) as code:
        main(["list"])
    err = capsys.readouterr().err
    assert code.value.code == 4
    assert "ReadTimeout" in err and "internal error" not in err and "run the same command" in err
