"""Loading scenario files: every kind of mistake is located exactly, all at once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ScenarioError, UsageError
from orchestrator.scenario.load import (
    MAX_BYTES,
    labs_dir_for,
    load_file,
    load_text,
    source_path,
)
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.schema import json_schema

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


def test_base_is_valid() -> None:
    scenario = load_text(BASE, "demo.yaml", labs_dir=None)
    assert scenario.id == "demo"
    assert scenario.machine("copy").clone_of == "web"


# --- the model ----------------------------------------------------------------------------


def test_unknown_key_points_at_the_key() -> None:
    line, col, path, message = one(edit("  title: Demo\n", "  title: Demo\n  colour: red\n"))
    assert (line, col, path) == (6, 3, "metadata.colour")
    assert message.startswith("unknown field `colour`")
    assert "allowed: id, title, objective, level, duration, tags" in message


def test_unknown_key_suggests_the_near_one() -> None:
    _, _, path, message = one(edit("    image:", "    imag:"))
    assert path == "machines.0.imag"
    assert "did you mean `image`?" in message


def test_wrong_type_points_at_the_value() -> None:
    text = edit("    title: First\n", "    title: First\n    points: lots\n")
    assert one(text)[:3] == (17, 13, "tasks.0.points")
    assert "expected a whole number (got 'lots')" in one(text)[3]


def test_number_where_text_is_expected() -> None:
    line, col, path, message = one(edit("  title: Demo", "  title: 5"))
    assert (line, col, path) == (5, 10, "metadata.title")
    assert message == "expected text, got a number (5); quote it"


def test_missing_field_points_at_the_enclosing_mapping() -> None:
    line, col, path, message = one(edit("    title: First\n", ""))
    assert (line, col, path, message) == (15, 5, "tasks.0.title", "required field missing")


def test_missing_top_level_field() -> None:
    assert one(edit("kind: Scenario\n", "")) == (1, 1, "kind", "required field missing")


def test_bad_enum_lists_the_choices() -> None:
    text = edit("  title: Demo\n", "  title: Demo\n  level: expert\n")
    assert one(text) == (
        6,
        10,
        "metadata.level",
        "must be one of: beginner, intermediate, advanced (got 'expert')",
    )


def test_bad_name_explains_the_pattern() -> None:
    line, col, path, message = one(edit("  id: demo", "  id: Demo_1"))
    assert (line, col, path) == (4, 7, "metadata.id")
    assert message.startswith("must be lowercase letters and digits joined by single '-'")


def test_names_cannot_be_templated() -> None:
    line, col, path, message = one(
        edit("    clone_of: web\n", "    hostname: '{{ student.id }}'\n")
    )
    assert (line, col, path) == (10, 15, "machines.1.hostname")
    assert message.endswith("; this field cannot use templates")


def test_bad_parameter_name_points_at_the_key() -> None:
    text = edit("machines:\n", "parameters:\n  bad-name: {random: hex}\nmachines:\n")
    line, col, path, _ = one(text)
    assert (line, col, path) == (7, 3, "parameters.bad-name")


def test_bad_regex_in_matches() -> None:
    text = edit('        run: "true"\n', "        file: {path: /etc/x, matches: '[a-'}\n")
    line, col, path, message = one(text)
    assert (line, col, path) == (19, 39, "tasks.0.checks.0.file.matches")
    assert message.startswith("not a valid regular expression")


def test_check_with_two_forms() -> None:
    text = edit('        run: "true"\n', '        run: "true"\n        file: {path: /etc/x}\n')
    line, col, path, message = one(text)
    assert (line, col, path) == (18, 9, "tasks.0.checks.0")
    assert message == (
        "a check needs exactly one of run | file | service | distinct | equal | kept (has: run, file)"
    )


def test_check_with_no_form() -> None:
    text = edit('        run: "true"\n', "        name: nothing to check\n")
    line, col, path, message = one(text)
    assert (line, col, path) == (18, 9, "tasks.0.checks.0")
    assert message.endswith("(has: none)")


def test_clone_cannot_set_its_image() -> None:
    _, _, path, message = one(edit("    clone_of: web\n", "    clone_of: web\n    image: x\n"))
    assert path == "machines.1"
    assert "takes image from `web`" in message


# --- YAML itself --------------------------------------------------------------------------


def test_duplicate_key() -> None:
    text = edit("    image: debian-12-systemd\n", "    image: a\n    image: b\n")
    assert one(text) == (9, 5, "machines.0.image", "duplicate key `image` (first at line 8)")


def test_non_string_key() -> None:
    text = edit("  title: Demo\n", "  title: Demo\n  1: one\n")
    line, col, path, message = one(text)
    assert (line, col, path) == (6, 3, "metadata")
    assert message.startswith("keys must be strings, not int `1`")


def test_syntax_error_at_its_mark() -> None:
    line, col, path, message = one(edit("  title: Demo", "  title: [Demo"))
    assert (line, col, path) == (6, 9, "")
    assert message.startswith("YAML syntax: ")


def test_top_level_must_be_a_mapping() -> None:
    line, col, _, message = one("- a\n- b\n")
    assert (line, col) == (1, 1)
    assert message.startswith("the top level must be a mapping")


def test_empty_file() -> None:
    assert one("")[3].startswith("the file is empty")


def test_python_tags_are_refused_not_run() -> None:
    text = edit("  title: Demo", "  title: !!python/object/apply:os.system [echo pwned]")
    line, col, path, message = one(text)
    assert (line, col, path) == (5, 10, "metadata.title")
    assert message.startswith("unsupported YAML tag `!!python/object/apply:os.system`")


def test_merge_keys_work() -> None:
    text = edit(
        "tasks:\n",
        "tasks:\n  - id: second\n    title: Second\n    checks:\n"
        "      - &web {machine: web, run: 'true'}\n      - {<<: *web, run: 'false'}\n",
    )
    scenario = load_text(text, "demo.yaml", labs_dir=None)
    assert scenario.tasks[0].checks[1].machine == "web"
    assert scenario.tasks[0].checks[1].run == "false"


# --- hostile input ------------------------------------------------------------------------


def test_alias_bomb() -> None:
    lines = ["bomb:", "  - &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"  - &a{level} [{refs}]")
    line, col, path, message = one(BASE + "\n".join(lines) + "\n")
    assert (line, col, path) == (24, 13, "")
    assert message == "more than 50000 values once aliases are expanded"


def test_recursive_alias() -> None:
    line, col, _, message = one(BASE + "loop: &loop [*loop]\n")
    assert (line, col) == (23, 7)
    assert message == "an alias refers to a collection that contains it"


def test_deep_nesting() -> None:
    text = BASE + "deep: " + "[" * 70 + "]" * 70 + "\n"
    # The top-level mapping is level 1, so the 64th bracket is level 65.
    assert one(text) == (23, 6 + 64, "", "nested deeper than 64 levels")


def test_deep_nesting_through_aliases() -> None:
    lines = ["deep:", "  - &d0 [x]"]
    for level in range(1, 70):
        lines.append(f"  - &d{level} [*d{level - 1}]")
    _, _, _, message = one(BASE + "\n".join(lines) + "\n")
    assert message == "nested deeper than 64 levels once aliases are expanded"


def test_huge_text() -> None:
    text = BASE + "description: " + "x" * MAX_BYTES + "\n"
    assert one(text) == (1, 1, "", "file is larger than 512 KiB")


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "scenarios" / "demo.yaml"
    path.parent.mkdir()
    with path.open("wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: nothing is written, nothing need be read
    with pytest.raises(ScenarioError) as caught:
        load_file(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:1:1: file is larger than 512 KiB"]


def test_two_documents() -> None:
    assert one(BASE + "---\nkind: Scenario\n") == (
        23,
        1,
        "",
        "more than one YAML document: a scenario file holds exactly one",
    )


def test_many_values() -> None:
    _, _, _, message = one(BASE + "many: [" + "0," * 60_000 + "0]\n")
    assert message == "more than 50000 values"


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


# --- fuzzing --------------------------------------------------------------------------------

FUZZ_KEYS = [
    *("apiVersion", "kind", "metadata", "machines", "tasks", "setup", "checks", "name"),
    *("machine", "run", "clone_of", "files", "src", "id", "title", "parameters", "distinct"),
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
keys = st.one_of(st.text(max_size=10), st.sampled_from(FUZZ_KEYS))
trees = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def loads_or_reports(text: str) -> None:
    try:
        result = load_text(text, "fuzz.yaml", labs_dir=None)
    except ScenarioError as e:
        assert e.problems
        assert all(p.line >= 1 and p.column >= 1 for p in e.problems)
    else:
        assert isinstance(result, Scenario)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_text(text: str) -> None:
    loads_or_reports(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_fuzz_structures(tree: object) -> None:
    loads_or_reports(yaml.safe_dump(tree))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_base(data: st.DataObject) -> None:
    lines = BASE.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.sampled_from(["", "  x: [\n", "- 1\n", "    run: {{ params.a\n"]))
    loads_or_reports("".join(lines))


def test_machine_facts_are_known_by_name_and_checked_at_load() -> None:
    _, _, path, message = one(with_parameter_and_run("'echo {{ machines.ghost.virt }}'"))
    assert path == "setup.0.run"
    assert "`machines.ghost` is not defined" in message


def test_an_unknown_top_level_key_named_like_pydantics_key_marker() -> None:
    # found by the fuzz test: pydantic's "[key]" marker must not be confused with a field
    with pytest.raises(ScenarioError) as exc:
        load_text('"[key]": null\n', "s.yaml", labs_dir=None)
    assert any("unknown field `[key]`" in p.message for p in exc.value.problems)
