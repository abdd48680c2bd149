"""The check registry: each form registered once, its probes and its judgement together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.checks import (
    BATCH_MARK,
    FORMS,
    NOT_BATCHED,
    Form,
    Plan,
    Probe,
    form_of,
    grade,
    judge,
    plan,
    probes,
)
from orchestrator.checks import registry as registry_module
from orchestrator.checks.registry import registry
from orchestrator.scenario.model import CHECK_FORMS, MULTI_MACHINE_FORMS, Check, Task
from orchestrator.scenario.model_base import parse

LAB = LabRef("demo", "alice")

#: for each form, a check of it, what its probes print when it passes, its default title
CASES: dict[str, tuple[dict[str, object], list[ExecResult], str]] = {
    "run": ({"machine": "a", "run": "hostname"}, [ExecResult(0, "a\n")], "a: hostname"),
    "file": (
        {"machine": "a", "file": {"path": "/etc/x"}},
        [ExecResult(0, "644 root\n")],
        "a: /etc/x",
    ),
    "service": (
        {"machine": "a", "service": {"name": "ssh", "active": True}},
        [ExecResult(0, "active\nenabled\n")],
        "a: service ssh",
    ),
    "distinct": (
        {"distinct": {"machines": ["a", "b"], "run": "id"}},
        [ExecResult(0, "1"), ExecResult(0, "2")],
        "distinct on a, b: id",
    ),
    "equal": (
        {"equal": {"machines": ["a", "b"], "run": "uname"}},
        [ExecResult(0, "Linux"), ExecResult(0, "Linux\n")],
        "equal on a, b: uname",
    ),
    "kept": (  # its first probe runs before the reboot
        {"machine": "a", "kept": "cat /etc/machine-id"},
        [ExecResult(0, "4f1e\n"), ExecResult(0, "4f1e")],
        "a: cat /etc/machine-id (the same after a reboot)",
    ),
}


def chk(data: dict[str, object]) -> Check:
    return parse(Check, data)


def test_every_form_of_the_format_is_registered_once() -> None:
    assert list(FORMS) == list(CHECK_FORMS)
    assert all(name == form.name for name, form in FORMS.items())
    assert len({id(form) for form in FORMS.values()}) == len(FORMS)  # no form serves two
    assert sorted(CASES) == sorted(CHECK_FORMS)  # and this file tests each


def test_registering_a_form_twice_or_an_unknown_one_fails() -> None:
    forms = list(FORMS.values())
    with pytest.raises(ValueError, match="`run` is registered twice"):
        registry([*forms, FORMS["run"]])
    with pytest.raises(ValueError, match="`port` is no field of a Check"):
        registry([*forms, replace(FORMS["run"], name="port")])
    with pytest.raises(ValueError, match="without a registration: kept"):
        registry(forms[:-1])


@pytest.mark.parametrize("name", CHECK_FORMS)
def test_a_form_probes_and_judges_its_own_checks(name: str) -> None:
    data, passing, title = CASES[name]
    check = chk(data)
    form = form_of(check)
    assert form is FORMS[name] and check.form == name
    planned = plan(check)
    assert planned.form is form and list(planned.probes) == form.probes(check) == probes(check)
    machines = [p.machine for p in planned.probes]
    assert set(machines) == set(data[name]["machines"] if name in MULTI_MACHINE_FORMS else ["a"])  # type: ignore[index]
    assert all(p.argv[:2] == ("sh", "-c") for p in planned.probes)
    result = planned.judge(passing)
    assert result.passed and result.name == title
    assert judge(check, passing) == result
    named = chk({**data, "name": "mine"})
    assert judge(named, passing).name == "mine"


@pytest.mark.parametrize("name", CHECK_FORMS)
def test_a_form_judges_only_probes_that_ran_to_their_end(name: str) -> None:
    data, passing, _title = CASES[name]
    form = FORMS[name]
    asked: list[Sequence[ExecResult]] = []

    def spying(check: Check, results: Sequence[ExecResult]) -> str | None:
        asked.append(results)
        return form.judge(check, results)

    check = chk(data)
    planned = Plan(check, replace(form, judge=spying), tuple(form.probes(check)))
    timed_out = [*passing[:-1], ExecResult(124, "", "", timed_out=True)]
    result = planned.judge(timed_out)
    assert not result.passed and result.message.startswith("timed out after 30 s on ")
    assert asked == []  # failed before the form was asked
    assert planned.judge(passing).passed and asked == [passing]


def test_grading_plans_each_check_once(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [CASES[name][0] for name in CHECK_FORMS]
    task = parse(Task, {"id": "t", "title": "t", "checks": checks, "after_reboot": True})
    # the fake answers by machine and command, each different in this task
    answers = {
        (p.machine, p.argv): r
        for name in CHECK_FORMS
        for p, r in zip(probes(chk(CASES[name][0])), CASES[name][1], strict=True)
    }

    class Answers:
        def exec(
            self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float
        ) -> ExecResult:
            if BATCH_MARK in argv[2]:
                return ExecResult(NOT_BATCHED)  # no batch here: probe by probe
            return answers[(machine, tuple(argv))]

    earlier = {probes(kept)[0]: CASES["kept"][1][0]}  # what ran before the reboot
    planned: list[str] = []
    counting: dict[str, Form] = {}
    for name, form in FORMS.items():

        def counted(check: Check, form: Form = form) -> list[Probe]:
            planned.append(check.form)
            return form.probes(check)

        counting[name] = replace(form, probes=counted)
    monkeypatch.setattr(registry_module, "FORMS", counting)
    results = grade(Answers(), LAB, [task], earlier=earlier)
    assert [c.passed for c in results[0].checks] == [True] * len(CHECK_FORMS)
    # each check's probes computed once, not again to judge it
    assert sorted(planned) == sorted(CHECK_FORMS)


kept = chk(CASES["kept"][0])


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        (None, ExecResult(0, "4f1e"), "could not run on a: it was not run before a reboot"),
        (ExecResult(0, "4f1e"), ExecResult(0, "9b2c"), "'4f1e' before the reboot and '9b2c'"),
        (ExecResult(0, " \n"), ExecResult(0, ""), "it printed nothing before the reboot"),
        (ExecResult(1, "", "No such file"), ExecResult(0, "x"), "failed before the reboot"),
        (ExecResult(0, "x"), ExecResult(2, "", "gone"), "failed after the reboot (exit 2): gone"),
    ],
)
def test_kept_fails_unless_the_output_is_the_same_on_both_sides_of_a_reboot(
    before: ExecResult | None, after: ExecResult, why: str
) -> None:
    task = parse(
        Task, {"id": "t", "title": "t", "checks": [CASES["kept"][0]], "after_reboot": True}
    )

    class After:
        def exec(
            self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float
        ) -> ExecResult:
            return ExecResult(NOT_BATCHED) if BATCH_MARK in argv[2] else after

    earlier = {} if before is None else {probes(kept)[0]: before}
    result = grade(After(), LAB, [task], earlier=earlier)[0].checks[0]
    assert not result.passed and why in result.message


def test_a_kept_check_belongs_to_a_task_graded_after_a_reboot() -> None:
    with pytest.raises(ValueError, match="set after_reboot"):
        parse(Task, {"id": "t", "title": "t", "checks": [CASES["kept"][0]]})
