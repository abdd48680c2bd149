"""Grading machines and `requires` in the format: what is refused, with its line; which
machines a check makes, reboots and removes (engines are test_library_grades.py's)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import ScenarioError, UsageError
from orchestrator.lab import backend_choice
from orchestrator.lab.grading_machines import named
from orchestrator.lab.verbs import reboot_machines
from orchestrator.scenario.load import load_text

HEAD = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {id: sealed, title: Seal it}
backends: [docker, vagrant]
"""
MACHINES = """\
machines:
  - name: template
  - name: copy
    clone_of: template
    grading: {state: start, seed: [{machine: template, path: /root/x, dest: /root/x}]}
"""
TASKS = """\
tasks:
  - id: first
    title: First
    checks: [{machine: template, run: "true"}]
  - id: sealed
    title: Sealed
    after_reboot: true
    requires: [first]
    checks:
      - {machine: template, file: {path: /etc/machine-id}}
      - {machine: copy, kept: cat /etc/machine-id}
"""


def load(text: str) -> Any:
    return load_text(text, "sealed.yaml", labs_dir=None)


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(text)
    return [f"{p.line}: {p.message}" for p in info.value.problems]


def test_a_grading_machine_is_made_by_checks_and_only_it_is_rebooted() -> None:
    scenario = load(HEAD + MACHINES + TASKS)
    assert [m.name for m in scenario.lab_machines] == ["template"]
    assert [m.name for m in scenario.grading_machines] == ["copy"]

    class LabLike:
        grading = scenario.grading_machines

    sealed = scenario.task("sealed")
    assert [m.name for m in named(LabLike(), [sealed])] == ["copy"]  # type: ignore[arg-type]
    # the template is only read: rebooting a sealed template would unseal it
    assert reboot_machines([sealed], LabLike()) == ["copy"]  # type: ignore[arg-type]
    assert reboot_machines([sealed]) == ["template", "copy"]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("grading: {state: start,", "grading: {state: later,"), "current, start (got 'later')"),
        (("  - name: copy\n    clone_of: template\n", "  - name: copy\n"), "needs `clone_of`"),
        (
            ("{machine: template, path: /root/x, dest: /root/x}", "{machine: template, dest: /x}"),
            "both `machine` and `path`",
        ),
        (
            (
                "{machine: template, path: /root/x, dest: /root/x}",
                "{content: a, path: /a, machine: template, dest: /x}",
            ),
            "exactly one of path | content",
        ),
        (
            ("{machine: template, path: /root/x,", "{machine: copy, path: /root/x,"),
            "`copy` is a grading machine",
        ),
        (
            ("{machine: template, path: /root/x,", "{machine: tmplate, path: /root/x,"),
            "did you mean `template`",
        ),
    ],
)
def test_a_wrong_grading_machine_is_refused_at_its_line(change: tuple[str, str], said: str) -> None:
    text = HEAD + MACHINES.replace(*change) + TASKS
    assert any(said in p for p in problems(text)), problems(text)


def test_steps_and_clones_may_not_use_a_grading_machine() -> None:
    setup = "setup:\n  - machine: copy\n    run: 'true'\n"
    found = problems(HEAD + MACHINES + "  - name: again\n    clone_of: copy\n" + setup + TASKS)
    assert any("a clone made by `up` cannot use it" in p for p in found), found
    assert any("setup runs before clones are taken" in p for p in found), found
    solved = TASKS.replace(
        "requires: [first]", "requires: [first]\n    solution: [{machine: copy, run: 'true'}]"
    )
    found = problems(HEAD + MACHINES + solved)
    assert any("a solution (the student's work) cannot use it" in p for p in found), found


def test_requires_names_an_earlier_task_and_kept_needs_a_reboot() -> None:
    found = problems(HEAD + MACHINES + TASKS.replace("requires: [first]", "requires: [sealed]"))
    assert any("`sealed` is no earlier task (earlier: first)" in p for p in found), found
    found = problems(HEAD + MACHINES + TASKS.replace("    after_reboot: true\n", ""))
    assert any("set after_reboot" in p for p in found), found


def test_an_engine_that_cannot_copy_a_start_is_refused_before_anything_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = load(HEAD + MACHINES + TASKS)

    class Plain:  # clones and snapshots, but no removal of one machine, no start copies
        name = "vagrant"
        capabilities = frozenset({"systemd", "clone", "snapshot", "vm"})
        virtualization = "kvm"

    monkeypatch.setattr(backend_choice.backends, "get", lambda _name: Plain())
    with pytest.raises(UsageError, match=r"copying a starting state .*removing one machine"):
        backend_choice.choose_backend(scenario, "vagrant")


def test_a_start_copy_of_a_machine_the_students_steps_touch_cannot_be_pooled() -> None:
    from orchestrator.pool.split import require_poolable

    plain = load(HEAD + MACHINES + TASKS)
    require_poolable(plain)  # no setup step depends on the student
    steps = "setup:\n  - machine: template\n    run: echo {{ student.id }} > /root/who\n"
    personal = load(HEAD + MACHINES + steps + TASKS)
    with pytest.raises(UsageError, match="grading machine copy copies template as `up` left"):
        require_poolable(personal)
