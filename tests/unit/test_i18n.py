"""Translations of student-facing texts: validation, language choice, localize."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.scenario.i18n import localize, match, normalize, pick_language
from orchestrator.scenario.load import load_text
from orchestrator.scenario.render import render_scenario

BASE = """\
apiVersion: guestlab/v1
kind: Scenario
metadata:
  id: demo
  title: A demo
description: English description
parameters:
  word:
    choices: [alfa]
machines:
  - name: m
tasks:
  - id: one
    title: First task
    instructions: Do {{ params.word }}.
    hints: [first hint, second hint]
    checks:
      - name: check zero
        machine: m
        run: "true"
        fail_message: zero failed for {{ params.word }}
      - machine: m
        run: "false"
        fail_message: one failed
  - id: two
    title: Second task
    checks:
      - machine: m
        run: "true"
"""


def scenario_with(translations: str):  # type: ignore[no-untyped-def]
    return load_text(BASE + textwrap.dedent(translations), "demo.yaml", labs_dir=None)


def problems(translations: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ScenarioError) as info:
        scenario_with(translations)
    return [(p.line, p.path, p.message) for p in info.value.problems]


FULL = """\
translations:
  pt-BR:
    metadata:
      title: Uma demonstração
    description: Descrição em português
    tasks:
      one:
        title: Primeira tarefa
        instructions: Faça {{ params.word }}.
        hints: [primeira dica, segunda dica]
        checks:
          - name: verificação zero
            fail_message: a zero falhou para {{ params.word }}
          - fail_message: a um falhou
"""


# --- the format -------------------------------------------------------------------------


def test_a_full_translation_loads() -> None:
    scenario = scenario_with(FULL)
    assert list(scenario.translations) == ["pt-BR"]
    assert scenario.translations["pt-BR"].tasks["one"].checks[1].fail_message == "a um falhou"


def test_scenarios_without_translations_still_load() -> None:
    assert scenario_with("").translations == {}


def test_unknown_task_is_located_at_its_key() -> None:
    found = problems(
        """\
        translations:
          pt-BR:
            tasks:
              three:
                title: Terceira
        """
    )
    line = BASE.count("\n") + 4
    assert found == [
        (
            line,
            "translations.pt-BR.tasks.three",
            "no task `three` in this scenario (its tasks: one, two)",
        )
    ]


def test_check_out_of_range_is_an_error() -> None:
    found = problems(
        """\
        translations:
          pt-BR:
            tasks:
              two:
                checks:
                  - name: zero
                  - name: um, mas a tarefa só tem uma
        """
    )
    assert len(found) == 1
    line, path, message = found[0]
    assert path == "translations.pt-BR.tasks.two.checks.1"
    assert line == BASE.count("\n") + 7
    assert "has 1 check: translations of checks go by position" in message


def test_hints_must_match_in_number() -> None:
    found = problems(
        """\
        translations:
          pt-BR:
            tasks:
              one:
                hints: [só uma]
        """
    )
    assert found[0][1] == "translations.pt-BR.tasks.one.hints"
    assert "has 2 hints and this translation 1" in found[0][2]


def test_unknown_keys_are_errors() -> None:
    found = problems(
        """\
        translations:
          pt-BR:
            tasks:
              one:
                titel: Primeira
            objective: nada
        """
    )
    assert {p[1] for p in found} == {
        "translations.pt-BR.tasks.one.titel",
        "translations.pt-BR.objective",
    }


def test_language_tags_are_checked() -> None:
    found = problems(
        """\
        translations:
          Portuguese:
            description: x
        """
    )
    assert found[0][1] == "translations.Portuguese"


def test_templates_in_translations_are_checked() -> None:
    found = problems(
        """\
        translations:
          pt-BR:
            description: "{{ params.nope }}"
        """
    )
    assert found[0][1] == "translations.pt-BR.description"
    assert "params.nope" in found[0][2]


# --- choosing the language --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("pt_BR.UTF-8", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("pt_BR@euro", "pt-BR"),
        ("en_US.UTF-8", "en-US"),
        ("C", ""),
        ("POSIX", ""),
        ("C.UTF-8", ""),
        ("", ""),
        ("123", ""),
    ],
)
def test_normalize(tag: str, expected: str) -> None:
    assert normalize(tag) == expected


def test_match_prefers_exact_then_language() -> None:
    assert match("pt-BR", ["en", "pt-PT", "pt-BR"]) == "pt-BR"
    assert match("pt", ["en", "pt-BR"]) == "pt-BR"
    assert match("pt_PT.UTF-8", ["en", "pt-BR"]) == "pt-BR"
    assert match("de", ["en", "pt-BR"]) is None


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, {}, "en"),
        ("pt-BR", {}, "pt-BR"),
        ("pt", {}, "pt-BR"),
        ("PT_br", {}, "pt-BR"),
        ("en", {"GUESTLAB_LANG": "pt-BR", "LANG": "pt_BR.UTF-8"}, "en"),
        ("fr", {"LANG": "pt_BR.UTF-8"}, "en"),  # the option decides, even when unknown
        (None, {"GUESTLAB_LANG": "pt_BR"}, "pt-BR"),
        (None, {"GUESTLAB_LANG": "en", "LANG": "pt_BR.UTF-8"}, "en"),
        (None, {"LANG": "pt_BR.UTF-8"}, "pt-BR"),
        (None, {"LC_MESSAGES": "pt_BR.UTF-8", "LANG": "en_US.UTF-8"}, "pt-BR"),
        (None, {"LC_ALL": "C", "LC_MESSAGES": "pt_BR.UTF-8"}, "en"),  # LC_ALL wins
        (None, {"LC_ALL": "", "LANG": "pt_BR.UTF-8"}, "pt-BR"),  # empty means unset
        (None, {"LANG": "de_DE.UTF-8"}, "en"),
        (None, {"GUESTLAB_LANG": "de:pt_BR"}, "pt-BR"),  # a list: the first known one
    ],
)
def test_pick_language(option: str | None, env: dict[str, str], expected: str) -> None:
    assert pick_language(option, env) == expected


def test_pick_language_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GUESTLAB_LANG", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "pt_BR.UTF-8")
    assert pick_language(None) == "pt-BR"


# --- localize ---------------------------------------------------------------------------


def test_localize_swaps_every_translated_text() -> None:
    pt = localize(scenario_with(FULL), "pt-BR")
    assert pt.metadata.title == "Uma demonstração"
    assert pt.description == "Descrição em português"
    one = pt.task("one")
    assert one.title == "Primeira tarefa"
    assert one.instructions == "Faça {{ params.word }}."
    assert one.hints == ["primeira dica", "segunda dica"]
    assert [c.name for c in one.checks] == ["verificação zero", None]
    assert [c.fail_message for c in one.checks] == [
        "a zero falhou para {{ params.word }}",
        "a um falhou",
    ]


def test_localize_keeps_english_where_nothing_is_translated() -> None:
    original = scenario_with(FULL)
    pt = localize(original, "pt")
    assert pt.task("two").title == "Second task"
    # what is graded does not change
    assert [t.checks for t in pt.tasks][1] == original.tasks[1].checks
    assert [c.run for c in pt.task("one").checks] == ["true", "false"]
    assert pt.metadata.id == original.metadata.id


def test_partial_translation_falls_back_per_field() -> None:
    scenario = scenario_with(
        """\
        translations:
          pt-BR:
            tasks:
              one:
                checks:
                  - {}
                  - name: a segunda
        """
    )
    pt = localize(scenario, "pt-BR")
    assert pt.metadata.title == "A demo"
    assert pt.description == "English description"
    assert pt.task("one").hints == ["first hint", "second hint"]
    assert [c.name for c in pt.task("one").checks] == ["check zero", "a segunda"]
    assert pt.task("one").checks[0].fail_message == "zero failed for {{ params.word }}"


def test_english_and_unknown_languages_leave_the_scenario_alone() -> None:
    scenario = scenario_with(FULL)
    assert localize(scenario, "en") is scenario
    assert localize(scenario, "de") is scenario
    assert localize(scenario, "") is scenario


def test_translated_templates_render_like_english_ones() -> None:
    pt = localize(scenario_with(FULL), "pt-BR")
    rendered = render_scenario(pt, {"word": "alfa"}, "s1")
    assert rendered.task("one").instructions == "Faça alfa."
    assert rendered.task("one").checks[0].fail_message == "a zero falhou para alfa"
