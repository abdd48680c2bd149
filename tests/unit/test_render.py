"""Per-student parameters and template rendering."""

from __future__ import annotations

import re

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.scenario.load import load_text
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.params import derive_params
from orchestrator.scenario.render import RenderError, render_scenario, render_text

SCENARIO = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {id: demo, title: Demo}
parameters:
  host: {choices: [atlas, borealis, cygnus]}
  token: {random: hex, length: 12}
  pin: {random: digits, length: 6}
  word: {random: word, length: 7}
  items: {random: hex, length: 4}
machines:
  - name: web
    hostname: web
setup:
  - machine: web
    run: echo "{{ params.token }}" > /root/token
tasks:
  - id: first
    title: Set the hostname to {{ params.host }}
    checks:
      - machine: web
        run: hostname
        stdout: {equals: "{{ params.host }}"}
      - machine: web
        file: {path: /etc/machine-id, matches: '^[0-9a-f]{32}\\s*$'}
      - machine: web
        run: cat /root/owner
        stdout: {equals: "{{ student.id }}-{{ params.items }}"}
"""


@pytest.fixture
def scenario() -> Scenario:
    return load_text(SCENARIO, "demo.yaml", labs_dir=None)


def test_derive_params_is_deterministic(scenario: Scenario) -> None:
    assert derive_params(scenario, "alice") == derive_params(scenario, "alice")


def test_derive_params_differ_between_students(scenario: Scenario) -> None:
    alice, bob = derive_params(scenario, "alice"), derive_params(scenario, "bob")
    for name in ("token", "pin", "word"):
        assert alice[name] != bob[name]
    tokens = {derive_params(scenario, f"student{i}")["token"] for i in range(200)}
    assert len(tokens) == 200


def test_derive_params_formats(scenario: Scenario) -> None:
    for student in ("alice", "bob", "carol", ""):
        params = derive_params(scenario, student)
        assert params["host"] in ("atlas", "borealis", "cygnus")
        assert re.fullmatch(r"[0-9a-f]{12}", params["token"])
        assert re.fullmatch(r"[0-9]{6}", params["pin"])
        assert re.fullmatch(r"([bdfgklmnprstvz][aeiou]){3}[bdfgklmnprstvz]", params["word"])


def test_choices_are_all_reachable(scenario: Scenario) -> None:
    hosts = {derive_params(scenario, f"s{i}")["host"] for i in range(60)}
    assert hosts == {"atlas", "borealis", "cygnus"}


def test_render_scenario(scenario: Scenario) -> None:
    params = derive_params(scenario, "alice")
    rendered = render_scenario(scenario, params, "alice")
    assert rendered.setup[0].run == f'echo "{params["token"]}" > /root/token'
    assert rendered.tasks[0].title == f"Set the hostname to {params['host']}"
    checks = rendered.tasks[0].checks
    assert checks[0].stdout is not None and checks[0].stdout.equals == params["host"]
    # A parameter named like a dict method is still the parameter.
    assert checks[2].stdout is not None
    assert checks[2].stdout.equals == f"alice-{params['items']}"
    assert scenario.setup[0].run == 'echo "{{ params.token }}" > /root/token'  # untouched


def test_render_leaves_regex_quantifiers_alone(scenario: Scenario) -> None:
    rendered = render_scenario(scenario, derive_params(scenario, "alice"), "alice")
    file = rendered.tasks[0].checks[1].file
    assert file is not None and file.matches == r"^[0-9a-f]{32}\s*$"
    assert render_text("x{32}y", {}, "s") == "x{32}y"


def test_render_keeps_trailing_newline() -> None:
    assert render_text("{{ params.a }}\n", {"a": "1"}, "s") == "1\n"


def test_strict_undefined_in_render_text() -> None:
    with pytest.raises(RenderError, match=r"`params.nope` is not defined \(known: a\)"):
        render_text("{{ params.nope }}", {"a": "1"}, "s")
    with pytest.raises(RenderError, match="'nope' is undefined"):
        render_text("{{ nope }}", {}, "s")
    with pytest.raises(RenderError, match=r"`student\.name` is not defined"):
        render_text("{{ student.name }}", {}, "s")


def test_render_scenario_reports_missing_params(scenario: Scenario) -> None:
    with pytest.raises(ScenarioError) as caught:
        render_scenario(scenario, {"host": "atlas"}, "alice")
    paths = [p.path for p in caught.value.problems]
    assert "setup.0.run" in paths
    first = caught.value.problems[0]
    assert (first.file, first.line) == ("<demo>", 0)


def test_render_scenario_validates_the_result(scenario: Scenario) -> None:
    params = dict(derive_params(scenario, "alice"), host="Not A Name")
    rendered = render_scenario(scenario, params, "alice")  # free text takes anything
    assert rendered.tasks[0].title == "Set the hostname to Not A Name"


def test_sandbox_in_render_text() -> None:
    for template in ("{{ ''.__class__ }}", "{{ params.__class__ }}", "{{ 9 ** 9 }}"):
        with pytest.raises(RenderError):
            render_text(template, {}, "s")
