"""The format's types: frozen dataclasses built by keyword, their methods shared
(`model_base.strict`), and pydantic as the one parser that validates into them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.scenario.model import Check, Machine, Resources, Step, Task
from orchestrator.scenario.model_base import dump, parse

ROOT = Path(__file__).resolve().parents[2]


def test_a_type_is_built_by_keyword_with_its_defaults_each_its_own() -> None:
    one, two = Machine(name="a"), Machine(name="a")
    assert one == two and hash(Resources()) == hash(Resources()) and one != Machine(name="b")
    assert one.files == [] and one.files is not two.files  # a factory's default, made anew
    assert one.resources == Resources() and repr(Step(machine="m", run="x")) == (
        "Step(machine='m', run='x', timeout=300.0)"
    )
    with pytest.raises(TypeError, match="unexpected"):
        Machine(name="a", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing"):
        Machine()  # type: ignore[call-arg]


def test_a_type_does_not_change_and_copies_with_replace() -> None:
    m = Machine(name="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del m.name  # type: ignore[misc]
    assert dataclasses.replace(m, name="b") == Machine(name="b") and m.name == "a"


def test_invariants_hold_however_a_type_is_made() -> None:
    with pytest.raises(ValueError, match="a clone takes image"):
        Machine(name="b", clone_of="a", image="x")
    with pytest.raises(ValidationError, match="a clone takes image"):
        parse(Machine, {"name": "b", "clone_of": "a", "image": "x"})
    with pytest.raises(ValueError, match="set after_reboot"):
        Task(id="t", title="t", checks=[Check(machine="m", kept="cat /x")])


def test_pydantic_validates_into_the_same_objects() -> None:
    data = {"id": "t", "title": "T", "checks": [{"machine": "m", "run": "true"}]}
    task = parse(Task, data)
    assert task == Task(id="t", title="T", checks=[Check(machine="m", run="true")])
    assert parse(Task, dump(task)) == task
    with pytest.raises(ValidationError) as bad:
        parse(Task, {**data, "id": "Not An Id", "extra": 1})
    kinds = {e["type"] for e in bad.value.errors()}
    assert kinds == {"string_pattern_mismatch", "unexpected_keyword_argument"}


def test_defining_the_format_imports_no_pydantic() -> None:
    code = "import sys, orchestrator.scenario.model; print('pydantic' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.stdout.split() == ["False"], res.stderr
