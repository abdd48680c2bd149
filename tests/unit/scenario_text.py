"""A small valid scenario and the helpers that locate what loading it reports; each test
of the loader changes one thing in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.scenario.load import load_text

# Line numbers below refer to this text; each test changes one thing in it.
BASE = """\
apiVersion: guestlab/v1
kind: Scenario
metadata:
  id: demo
  title: Demo
machines:
  - name: web
    image: debian-12-systemd
  - name: copy
    clone_of: web
setup:
  - machine: web
    run: echo hi
tasks:
  - id: first
    title: First
    checks:
      - machine: web
        run: "true"
    solution:
      - machine: web
        run: echo fix
"""

FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "scenario-format.md"


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def problems(text: str, labs_dir: Path | None = None) -> list[tuple[int, int, str, str]]:
    with pytest.raises(ScenarioError) as caught:
        load_text(text, "demo.yaml", labs_dir=labs_dir)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def one(text: str, labs_dir: Path | None = None) -> tuple[int, int, str, str]:
    found = problems(text, labs_dir)
    assert len(found) == 1, found
    return found[0]
