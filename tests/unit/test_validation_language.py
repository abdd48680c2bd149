"""A scenario's problems in the reader's language: every sentence guestlab's own, every
location, field name, key and value as the file has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import messages
from orchestrator.errors import ScenarioError
from orchestrator.scenario import explain
from orchestrator.scenario.load import load_text
from orchestrator.scenario.render import render_scenario
from tests.english import english_in
from tests.unit.scenario_text import edit

Found = list[tuple[int, int, str, str]]

#: the issue's example: a file written as if `metadata` were the top level
TOP = "apiVersion, kind, metadata, description, backends, parameters, machines, setup, tasks, translations"
FLAT = "id: bad-one\ntitle: x\nmachines:\n  - name: m\n    image: 3\ntasks: []\nfoo: 1\n"


def problems(text: str, lang: str, labs_dir: Path | None = None) -> Found:
    with messages.language(lang), pytest.raises(ScenarioError) as caught:
        load_text(text, "demo.yaml", labs_dir=labs_dir)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def every_mistake(labs: Path) -> str:
    """Mistakes of every stage: YAML, the model, references, templates (a translation's
    are checked only against valid tasks: below)."""
    (labs / "demo").mkdir(parents=True)
    text = edit("  title: Demo\n", "  title: Demo\n  level: expert\n  duration: soon\n")
    text = edit(
        "    image: debian-12-systemd\n",
        "    image: debian-12-systemd\n    imag: x\n"
        "    files:\n      - {src: ../x, dest: etc/motd}\n",
        text,
    )
    text = edit("    clone_of: web\n", "    clone_of: web\n    image: other\n", text)
    text = edit("  - machine: web\n    run: echo hi", "  - machine: wbe\n    run: echo hi", text)
    text = edit(
        "    title: First\n", "    title: First\n    points: lots\n    requires: [later]\n", text
    )
    text = edit('        run: "true"\n', '        run: "true"\n        file: {path: /x}\n', text)
    text = edit("        run: echo fix", "        run: echo {{ params.nope }}", text)
    return text + "description: one\ndescription: two\n"


def test_the_issues_example_is_said_in_brazilian_portuguese() -> None:
    found = problems(FLAT, "pt-BR")
    assert found == [
        (1, 1, "apiVersion", "campo obrigatório ausente"),
        (1, 1, "id", f"campo desconhecido `id`; você quis dizer `kind`? (permitidos: {TOP})"),
        (1, 1, "kind", "campo obrigatório ausente"),
        (1, 1, "metadata", "campo obrigatório ausente"),
        (2, 1, "title", f"campo desconhecido `title` (permitidos: {TOP})"),
        (5, 12, "machines.0.image", "esperava texto, recebeu um número (3); coloque entre aspas"),
        (6, 8, "tasks", "precisa de pelo menos 1 item"),
        (7, 1, "foo", f"campo desconhecido `foo` (permitidos: {TOP})"),
    ]
    english = problems(FLAT, "en")
    assert [p[:3] for p in english] == [p[:3] for p in found]
    assert english[5][3] == "expected text, got a number (3); quote it"
    assert english[6][3] == "needs at least 1 item"
    assert english[1][3] == f"unknown field `id`; did you mean `kind`? (allowed: {TOP})"
    assert english_in(" ".join(p[3] for p in found)) == []


def test_every_stage_speaks_the_readers_language_at_the_same_places(tmp_path: Path) -> None:
    text = every_mistake(tmp_path)
    english, portuguese = problems(text, "en", tmp_path), problems(text, "pt-BR", tmp_path)
    assert [p[:3] for p in portuguese] == [p[:3] for p in english]  # the same spots
    said = {(line, path): text for line, _c, path, text in portuguese}
    assert said[(6, "metadata.level")] == (
        "deve ser um destes: beginner, intermediate, advanced (recebeu 'expert')"
    )
    assert said[(11, "machines.0.imag")].startswith(
        "campo desconhecido `imag`; você quis dizer `image`? (permitidos: name, kind, image,"
    )
    assert said[(13, "machines.0.files.0.src")] == "sai de labs/demo/ (por `..`)"
    assert said[(14, "machines.1")] == "um clone herda image de `web`; remova daqui"
    assert said[(18, "setup.0.machine")] == (
        "máquina desconhecida `wbe`; você quis dizer `web`? (máquinas: web, copy)"
    )
    assert said[(23, "tasks.0.points")] == "esperava um número inteiro (recebeu 'lots')"
    assert said[(26, "tasks.0.checks.0")] == (
        "uma verificação precisa de exatamente um entre run | file | service | distinct | equal"
        " | kept (tem: run, file)"
    )
    assert said[(31, "tasks.0.solution.0.run")] == (
        "template: `params.nope` não está definido (conhecidos: nenhum)"
    )
    assert said[(33, "description")] == (
        "chave `description` duplicada (a primeira está na linha 32)"
    )
    assert english_in(" ".join(said.values())) == []
    # English as it always was
    assert [text for *_p, text in english] == [
        "must be one of: beginner, intermediate, advanced (got 'expert')",
        "must be a duration such as 90s, 15m or 1h (got 'soon')",
        "unknown field `imag`; did you mean `image`? (allowed: name, kind, image, init,"
        " hostname, resources, files, clone_of, grading, disks)",
        "leaves labs/demo/ (through `..`)",
        "must be an absolute path (starting with /) (got 'etc/motd')",
        "a clone takes image from `web`; remove it here",
        "unknown machine `wbe`; did you mean `web`? (machines: web, copy)",
        "expected a whole number (got 'lots')",
        "`later` is no earlier task (earlier: none)",
        "a check needs exactly one of run | file | service | distinct | equal | kept"
        " (has: run, file)",
        "template: `params.nope` is not defined (known: none)",
        "duplicate key `description` (first at line 32)",
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a: b: c\n", "sintaxe YAML: valores de mapeamento não são permitidos neste contexto"),
        (
            "a: [1, 2\n",
            "sintaxe YAML: não encontrou a ',' ou o ']' esperados"
            " (ao analisar uma sequência em fluxo na linha 1)",
        ),
        ("", "o arquivo está vazio; um cenário é um mapeamento que começa com apiVersion"),
        (
            "- a\n",
            "o nível mais alto deve ser um mapeamento (apiVersion, kind, metadata, ...),"
            " não uma lista",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "mais de um documento YAML: um arquivo de cenário contém exatamente um",
        ),
        ("a: !!python/object:os.system x\n", "tag YAML não suportada `!!python/object:os.system`"),
        ("1: a\n", "as chaves devem ser textos, não int `1` (coloque entre aspas)"),
        ("a: &x [*x]\n", "um alias se refere a uma coleção que o contém"),
    ],
)
def test_yaml_problems_are_said_in_brazilian_portuguese(text: str, said: str) -> None:
    found = problems(text, "pt-BR")
    assert said in [p[3] for p in found], found


def test_translation_mismatches_are_said_in_brazilian_portuguese() -> None:
    hints = edit("    title: First\n", "    title: First\n    hints: [a, b]\n")
    text = hints + (
        "translations:\n  pt-BR:\n    tasks:\n      first: {hints: [um]}\n"
        "      second: {title: Segunda}\n"
    )
    found = problems(text, "pt-BR")
    assert [(p[2], p[3]) for p in found] == [
        (
            "translations.pt-BR.tasks.first.hints",
            "a tarefa `first` tem 2 dicas e esta tradução 1: traduza cada dica, na mesma ordem",
        ),
        (
            "translations.pt-BR.tasks.second",
            "não há tarefa `second` neste cenário (as tarefas dele: first)",
        ),
    ]


def test_a_value_that_breaks_the_format_once_rendered_is_said_so() -> None:
    text = edit("    run: echo hi\n", "    run: '{{ params.cmd }}'\n")
    text = edit("machines:\n", "parameters:\n  cmd: {choices: [ls]}\nmachines:\n", text)
    scenario = load_text(text, "demo.yaml", labs_dir=None)
    with messages.language("pt-BR"), pytest.raises(ScenarioError) as caught:
        render_scenario(scenario, {"cmd": ""}, "ana")
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("setup.0.run", "depois de renderizar: não pode ser vazio")
    ]


def test_an_error_type_not_known_keeps_pydantics_english_and_what_was_found() -> None:
    err = {"type": "new_kind", "msg": "Input should be shiny", "input": 3, "loc": ("x",)}
    with messages.language("pt-BR"):
        assert explain.message(err, ("x",)) == "must be shiny (got a number (3))"
        known = {**err, "type": "int_from_float", "input": 1.5}
        assert (
            explain.message(known, ("x",)) == "esperava um número inteiro (recebeu um número (1.5))"
        )


def test_a_listing_counts_an_invalid_files_problems_in_the_readers_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.scenario.summary import summaries

    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLAT)
    with messages.language("pt-BR"):
        assert summaries([bad], "pt-BR")[0][2] == f"8 problemas; guestlab validate {bad}"
    assert summaries([bad], "en")[0][2] == f"8 problems; guestlab validate {bad}"
