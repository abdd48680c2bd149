"""Start-up of `up` and of a pool claim: a lab prepared from an unchanged scenario file
comes from the scenario cache (no YAML, pydantic or Jinja2), rendered exactly as a fresh
validation renders it, and the instructions laid out in a thread print as if printed
directly."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli import console

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "machine-id-clone.yaml"
FORMAT = {"yaml", "jinja2", "markupsafe", "pydantic", "pydantic_core"}
#: what a claim does before its first engine call: the lab prepared, where to cut it
CLAIM_START = f"""
from orchestrator.lab.opening import prepare
from orchestrator.pool.split import split
lab = prepare({str(SCENARIO)!r}, "ann", "lxd")
print(split(lab).first, lab.params["template_id"])
"""


def claim_start(home: Path) -> tuple[set[str], str]:
    """The top-level packages CLAIM_START imports, and what it printed."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CLAIM_START],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GUESTLAB_HOME": str(home)},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("import time:")]
    return {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in lines}, res.stdout


def test_a_claim_prepares_an_unchanged_lab_without_the_format_or_templates(
    tmp_path: Path,
) -> None:
    first, said = claim_start(tmp_path)
    assert first >= {"pydantic", "jinja2"}  # the first one validates and renders
    again, said_again = claim_start(tmp_path)
    assert not again & FORMAT, sorted(again & FORMAT)
    assert said_again == said and said.split()[0] == "0"  # the first step names the student


def test_a_cached_lab_is_the_lab_a_fresh_validation_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.lab.opening import prepare
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file
    from orchestrator.scenario.render import render_scenario

    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    for lang in ("en", "pt-BR"):
        fresh = prepare(str(SCENARIO), "ann", "lxd", lang)
        cached = prepare(str(SCENARIO), "ann", "lxd", lang)
        scenario = localize(load_file(SCENARIO), lang)
        expected = render_scenario(scenario, fresh.params, "ann", fresh.machine_facts())
        assert cached.scenario == fresh.scenario == expected
        assert cached.params == fresh.params


def printed(renderable: object, *, later: bool, terminal: bool) -> str:
    target = Console(
        file=io.StringIO(), width=72, force_terminal=terminal, highlight=False, emoji=False
    )
    saved, console.out = console.out, target
    try:
        target.print(console.laid_out_later(lambda: renderable)() if later else renderable)
        target.print("after")
    finally:
        console.out = saved
    assert isinstance(target.file, io.StringIO)
    return target.file.getvalue()


@pytest.mark.parametrize("terminal", [False, True])
def test_instructions_laid_out_in_a_thread_print_as_printed_directly(terminal: bool) -> None:
    from orchestrator.scenario.load import load_file
    from orchestrator.views import scenario_view

    view = scenario_view(load_file(SCENARIO), student_flag=" --student ann")
    direct = printed(view, later=False, terminal=terminal)
    assert printed(view, later=True, terminal=terminal) == direct
    assert "machine-id-clone" in direct


def test_a_layout_that_failed_in_its_thread_fails_in_the_caller() -> None:
    def broken() -> object:
        raise ValueError("no view")

    with pytest.raises(ValueError, match="no view"):
        console.laid_out_later(broken)()


def test_a_layout_in_a_thread_speaks_the_callers_language() -> None:
    import contextvars

    from orchestrator import messages

    def in_portuguese() -> str:
        messages.use("pt-BR")
        return printed(
            console.laid_out_later(lambda: messages._("Machines"))(), later=False, terminal=False
        )

    said = contextvars.copy_context().run(in_portuguese)  # the language stays in that context
    assert said.split()[0] == contextvars.copy_context().run(
        lambda: (messages.use("pt-BR"), messages._("Machines"))[1]
    )
    assert said.split()[0] != "Machines"
