"""Loading scenario files: references between machines and steps, files beside the
scenario, templates and whole files, every mistake located exactly and all at once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from orchestrator.errors import ScenarioError, UsageError
from orchestrator.scenario.load import labs_dir_for, load_file, load_text, source_path
from orchestrator.scenario.schema import json_schema
from tests.unit.scenario_text import BASE, FORMAT_DOC, edit, one, problems

# --- cross-references ---------------------------------------------------------------------


def test_duplicate_machine() -> None:
    text = edit("setup:\n", "  - name: web\nsetup:\n")
    assert one(text) == (
        11,
        11,
        "machines.2.name",
        "duplicate machine name `web` (first at line 7)",
    )


def test_duplicate_task_id() -> None:
    text = BASE + "  - id: first\n    title: Again\n    checks: [{machine: web, run: 'true'}]\n"
    assert one(text) == (23, 9, "tasks.1.id", "duplicate task id `first` (first at line 15)")


def test_unknown_machine_in_a_check() -> None:
    line, col, path, message = one(
        edit("      - machine: web\n        run:", "      - machine: db\n        run:")
    )
    assert (line, col, path) == (18, 18, "tasks.0.checks.0.machine")
    assert message == "unknown machine `db` (machines: web, copy)"


def test_unknown_machine_in_setup() -> None:
    assert one(edit("  - machine: web", "  - machine: wbe"))[:3] == (12, 14, "setup.0.machine")


def test_unknown_machine_in_a_solution() -> None:
    text = edit(
        "      - machine: web\n        run: echo fix", "      - machine: db\n        run: echo fix"
    )
    assert one(text)[:3] == (21, 18, "tasks.0.solution.0.machine")


@pytest.mark.parametrize("form", ["distinct", "equal"])
def test_unknown_machine_in_distinct_or_equal(form: str) -> None:
    text = edit(
        '      - machine: web\n        run: "true"\n',
        f"      - {form}: {{machines: [web, db], run: hostname}}\n",
    )
    column = 9 + len(form) + len(": {machines: [web, ")
    line, col, path, message = one(text)
    assert (line, col, path) == (18, column, f"tasks.0.checks.0.{form}.machines.1")
    assert message.startswith("unknown machine `db`")


def test_clone_of_unknown() -> None:
    line, col, path, message = one(edit("    clone_of: web", "    clone_of: wbe"))
    assert (line, col, path) == (10, 15, "machines.1.clone_of")
    assert message == "unknown machine `wbe`; did you mean `web`? (machines: web, copy)"


def test_clone_cycle() -> None:
    text = edit(
        "  - name: copy\n    clone_of: web\n",
        "  - name: b\n    clone_of: c\n  - name: c\n    clone_of: b\n",
    )
    assert one(text) == (10, 15, "machines.1.clone_of", "clone chain loops: b -> c -> b")


def test_clone_of_itself() -> None:
    text = edit("  - name: copy\n    clone_of: web\n", "  - name: copy\n    clone_of: copy\n")
    assert one(text) == (10, 15, "machines.1.clone_of", "clone chain loops: copy -> copy")


def test_setup_cannot_target_a_clone() -> None:
    line, col, path, message = one(edit("  - machine: web", "  - machine: copy"))
    assert (line, col, path) == (12, 14, "setup.0.machine")
    assert message == (
        "setup runs before clones are taken, and `copy` is a clone: run this step on `web`"
    )


# --- files[].src --------------------------------------------------------------------------


def with_src(src: str) -> str:
    return edit(
        "    image: debian-12-systemd\n",
        f"    image: debian-12-systemd\n    files:\n      - {{src: '{src}', dest: /etc/motd}}\n",
    )


SRC_AT = (10, 15, "machines.0.files.0.src")


@pytest.fixture
def labs(tmp_path: Path) -> Path:
    (tmp_path / "labs" / "demo" / "files").mkdir(parents=True)
    (tmp_path / "labs" / "demo" / "files" / "motd").write_text("hello\n")
    (tmp_path / "secret").write_text("not for students\n")
    return tmp_path / "labs"


def test_src_inside_labs_is_fine(labs: Path) -> None:
    assert load_text(with_src("files/motd"), "demo.yaml", labs_dir=labs).id == "demo"


def test_src_escaping_with_dotdot(labs: Path) -> None:
    line, col, path, message = one(with_src("../../secret"), labs)
    assert (line, col, path) == SRC_AT
    assert message == "leaves labs/demo/ (through `..`)"


def test_src_escaping_with_dotdot_without_labs_dir() -> None:
    assert one(with_src("files/../../x"))[:3] == SRC_AT


def test_src_absolute(labs: Path) -> None:
    line, col, path, message = one(with_src("/etc/passwd"), labs)
    assert (line, col, path) == SRC_AT
    assert message == "must be a path relative to labs/demo/, not absolute"


def test_src_symlink_escaping(labs: Path) -> None:
    (labs / "demo" / "files" / "link").symlink_to(labs.parent / "secret")
    line, col, path, message = one(with_src("files/link"), labs)
    assert (line, col, path) == SRC_AT
    assert message.startswith("leaves labs/demo/ (resolves to ")


def test_src_missing(labs: Path) -> None:
    line, col, path, message = one(with_src("files/nope"), labs)
    assert (line, col, path) == SRC_AT
    assert message == f"no such file: {labs / 'demo' / 'files' / 'nope'}"


def test_src_not_a_regular_file(labs: Path) -> None:
    assert one(with_src("files"), labs)[3].startswith("not a regular file")


def test_source_path_rechecks_containment(labs: Path) -> None:
    scenario_file = labs.parent / "scenarios" / "demo.yaml"
    scenario_file.parent.mkdir()
    scenario_file.write_text(with_src("files/motd"))
    scenario = load_file(scenario_file)
    assert (
        source_path(scenario_file, scenario, "files/motd")
        == (labs / "demo" / "files" / "motd").resolve()
    )
    with pytest.raises(ScenarioError) as caught:
        source_path(scenario_file, scenario, "../../secret")
    assert "leaves labs/demo/" in str(caught.value.problems[0])


def test_labs_dir_is_beside_the_scenarios_folder(tmp_path: Path) -> None:
    assert labs_dir_for(tmp_path / "scenarios" / "x.yaml") == tmp_path / "labs"
    assert labs_dir_for(Path("x.yaml")) == Path(os.getcwd()).parent / "labs"


# --- templates ----------------------------------------------------------------------------


def with_parameter_and_run(run: str) -> str:
    text = edit("machines:\n", "parameters:\n  token: {random: hex, length: 8}\nmachines:\n")
    return edit("    run: echo hi\n", f"    run: {run}\n", text)


def test_template_with_known_names_is_fine() -> None:
    text = with_parameter_and_run("'echo {{ params.token }} {{ student.id }} > /root/token'")
    scenario = load_text(text, "demo.yaml", labs_dir=None)
    assert "{{ params.token }}" in scenario.setup[0].run  # rendered only per student


def test_undefined_template_name() -> None:
    line, col, path, message = one(with_parameter_and_run("'echo {{ params.tokn }}'"))
    assert (line, col, path) == (15, 10, "setup.0.run")
    assert message == "template: `params.tokn` is not defined (known: token)"


def test_undefined_free_name() -> None:
    _, _, _, message = one(with_parameter_and_run("'echo {{ token }}'"))
    assert message == (
        "template: 'token' is undefined"
        " (templates can use params.NAME, student.id and machines.NAME.FACT)"
    )


def test_template_syntax_error() -> None:
    line, col, path, message = one(with_parameter_and_run("'echo {{ params.token '"))
    assert (line, col, path) == (15, 10, "setup.0.run")
    assert message.startswith("template syntax error: ")


@pytest.mark.parametrize(
    "template",
    [
        "{{ params.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ params.token.__class__.__mro__ }}",
        "{{ student.id.upper.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ 2 ** 100000 }}",
        "{{ 'x' * 100000000 }}",
    ],
)
def test_template_cannot_reach_python_internals(template: str) -> None:
    line, col, path, message = one(with_parameter_and_run(f'"{template}"'))
    assert (line, col, path) == (15, 10, "setup.0.run")
    assert message.startswith(("template not allowed: ", "template: "))


def test_every_mistake_at_once(labs: Path) -> None:
    text = with_src("../x")
    text = edit("  title: Demo\n", "  title: Demo\n  level: expert\n", text)
    text = edit("  - machine: web", "  - machine: copy", text)
    text = edit("    title: First\n", "    title: First\n    points: lots\n", text)
    text = edit("        run: echo fix", "        run: echo {{ params.nope }}", text)
    text = edit(
        '      - machine: web\n        run: "true"',
        '      - machine: db\n        run: "true"',
        text,
    )
    found = [(line, col, path) for line, col, path, _ in problems(text, labs)]
    assert found == [
        (6, 10, "metadata.level"),
        (11, 15, "machines.0.files.0.src"),
        (15, 14, "setup.0.machine"),
        (20, 13, "tasks.0.points"),
        (22, 18, "tasks.0.checks.0.machine"),
        (26, 14, "tasks.0.solution.0.run"),
    ]


def test_problem_format() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_text(edit("  - machine: web", "  - machine: wbe"), "s/demo.yaml", labs_dir=None)
    assert str(caught.value.problems[0]) == (
        "s/demo.yaml:12:14: setup.0.machine: unknown machine `wbe`; did you mean `web`? "
        "(machines: web, copy)"
    )


# --- whole files ----------------------------------------------------------------------------


def test_the_documented_example_loads(tmp_path: Path) -> None:
    match = re.search(r"```yaml\n(.*?)```", FORMAT_DOC.read_text(), re.S)
    assert match
    path = tmp_path / "scenarios" / "machine-id-clone.yaml"
    path.parent.mkdir()
    path.write_text(match.group(1))
    motd = tmp_path / "labs" / "machine-id-clone" / "files" / "motd"
    motd.parent.mkdir(parents=True)
    motd.write_text("Welcome\n")
    scenario = load_file(path)
    assert scenario.id == "machine-id-clone"
    assert [m.name for m in scenario.machines] == ["template", "clone"]
    check = scenario.tasks[0].checks[0]
    assert check.distinct is not None and check.distinct.machines == ["template", "clone"]


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_file(tmp_path / "nope.yaml")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"apiVersion: guestlab/v1\nkind: \xff\n")
    with pytest.raises(ScenarioError) as caught:
        load_file(path)
    assert [(p.line, p.column) for p in caught.value.problems] == [(2, 7)]


def test_json_schema_is_for_editors() -> None:
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "guestlab" in schema["title"]
    assert "metadata" in schema["properties"]


def test_machine_facts_are_known_by_name_and_checked_at_load() -> None:
    _, _, path, message = one(with_parameter_and_run("'echo {{ machines.ghost.virt }}'"))
    assert path == "setup.0.run"
    assert "`machines.ghost` is not defined" in message
