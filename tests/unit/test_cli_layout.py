"""The cli package's shape: gc's collectors, and imports that run one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestrator.cli import classroom, cli, host
from orchestrator.cli.app import load_all
from orchestrator.state import Store

load_all()  # every command, as `--help` loads them; tests below patch what they register

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator" / "cli"
#: the modules of the package that may know of classes
CLASS_MODULES = {"classroom", "class_enrol", "class_tables", "serve", "app", "seat_links"}


def imported(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_gc_runs_the_registered_collectors_before_the_orphans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def collect(store: Store) -> list[str]:
        calls.append("collector")
        return ["removed lab x--ann"]

    def orphans(store: Store) -> dict[str, object]:
        calls.append("orphans")
        return {}

    monkeypatch.setattr(host, "COLLECTORS", [host.Collector("things", collect)])
    monkeypatch.setattr("orchestrator.teardown.gc", orphans)
    result = CliRunner().invoke(cli, ["gc"])
    assert result.exit_code == 0, result.output
    assert calls == ["collector", "orphans"]
    assert "✓ removed lab x--ann" in result.output and "Nothing to collect" not in result.output


def test_gc_with_nothing_to_collect_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "COLLECTORS", [host.Collector("things", lambda store: [])])
    monkeypatch.setattr("orchestrator.teardown.gc", lambda store: {})
    result = CliRunner().invoke(cli, ["gc"])
    assert result.exit_code == 0, result.output
    assert "Nothing to collect." in result.output


def test_gc_loaded_alone_brings_the_class_and_pool_collectors() -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "gc", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "labs whose class time is up, pool labs" in " ".join(res.stdout.split())


def test_the_classroom_gives_gc_its_class_time_once() -> None:
    assert cli.get_command(click.Context(cli), "gc") is host.gc
    assert host.COLLECTORS.count(classroom.EXPIRE) == 1
    classroom.register(cli)  # registering again changes nothing
    assert host.COLLECTORS.count(classroom.EXPIRE) == 1
    assert host.gc_help() == (  # in English: the help is put together when shown
        "Remove labs whose class time is up, pool labs a stopped `pool fill` left or past their"
        " age limit, and resources of labs the state store no longer knows (after a crash)."
    )


def test_only_the_class_commands_import_the_classroom() -> None:
    for path in [*PACKAGE.glob("*.py"), ROOT / "orchestrator" / "teardown.py"]:
        if path.stem in CLASS_MODULES:
            continue
        bad = {m for m in imported(path) if m.startswith("orchestrator.classroom")}
        assert not bad, f"{path.name} imports {bad}"


def test_the_cli_package_has_no_import_circle() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    edges = {
        m: {n for n in modules if f"orchestrator.cli.{n}" in imported(PACKAGE / f"{m}.py")}
        for m in modules
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module not in done:
            for n in edges[module]:
                visit(n, (*path, module))
            done.add(module)

    for m in sorted(modules):
        visit(m, ())


def test_no_private_name_crosses_a_module() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orchestrator"):
                # `_` is gettext's public name by convention (orchestrator.messages)
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "_"]
                assert private in ([], ["__version__"]), f"{path.name}: {private}"
