"""Loading scenario files: mistakes in the model and in the YAML itself are located
exactly, hostile input is refused, and no input crashes the loader (fuzzed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ScenarioError
from orchestrator.scenario.load import MAX_BYTES, load_file, load_text
from orchestrator.scenario.model import Scenario
from tests.unit.scenario_text import BASE, edit, one


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


def test_an_unknown_top_level_key_named_like_pydantics_key_marker() -> None:
    # found by the fuzz test: pydantic's "[key]" marker must not be confused with a field
    with pytest.raises(ScenarioError) as exc:
        load_text('"[key]": null\n', "s.yaml", labs_dir=None)
    assert any("unknown field `[key]`" in p.message for p in exc.value.problems)
