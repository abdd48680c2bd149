"""Authoring helpers: `new` writes a skeleton that validates; `validate` and `show` speak JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.lab import scenario_errors
from orchestrator.scenario.i18n import localize
from orchestrator.scenario.load import load_file
from orchestrator.scenario.skeleton import write_skeleton


def guestlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, timeout=60
    )


def test_the_skeleton_validates_and_has_a_translation_and_a_solution(tmp_path: Path) -> None:
    scenario, motd = write_skeleton("my-first-lab", tmp_path)
    assert scenario == tmp_path / "scenarios" / "my-first-lab.yaml" and motd.is_file()
    assert scenario_errors([scenario])[scenario] is None
    sc = load_file(scenario)
    assert sc.id == "my-first-lab" and len(sc.machines) == 1
    assert all(t.solution and t.checks for t in sc.tasks)
    pt = localize(sc, "pt-BR")
    assert pt.tasks[0].title != sc.tasks[0].title


@pytest.mark.parametrize("bad", ["My Lab", "a--b", "-x", "x" * 41, "../etc"])
def test_new_refuses_what_is_not_an_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="not a scenario id"):
        write_skeleton(bad, tmp_path)
    assert not any(tmp_path.iterdir())


def test_new_never_overwrites(tmp_path: Path) -> None:
    write_skeleton("mine", tmp_path)
    before = (tmp_path / "scenarios" / "mine.yaml").read_text()
    (tmp_path / "scenarios" / "mine.yaml").write_text(before + "# my edits\n")
    res = guestlab("new", "mine", "--dir", str(tmp_path))
    assert res.returncode == 2 and "exists already" in res.stderr
    assert (tmp_path / "scenarios" / "mine.yaml").read_text().endswith("# my edits\n")


def test_validate_json_locates_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: guestlab/v1\nkind: Scenario\nmetadata: {id: Bad_Id, title: t}\n")
    good, _ = write_skeleton("good", tmp_path)
    res = guestlab("validate", "--format", "json", str(bad), str(good))
    assert res.returncode == 2
    rows = {Path(r["file"]).name: r for r in json.loads(res.stdout)}
    assert rows["good.yaml"] == {"file": str(good), "valid": True, "problems": []}
    problems = rows["bad.yaml"]["problems"]
    assert not rows["bad.yaml"]["valid"] and problems
    assert set(problems[0]) == {"file", "line", "column", "path", "message"}
    assert any(p["path"] == "metadata.id" and p["line"] == 3 for p in problems)


def test_show_json_is_the_scenario_as_read(tmp_path: Path) -> None:
    path, _ = write_skeleton("shown", tmp_path)
    res = guestlab("show", str(path), "--format", "json", "--lang", "pt-BR")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["metadata"]["id"] == "shown"
    assert data["tasks"][0]["title"] == "Inicie o hello.service agora e em todo boot"
