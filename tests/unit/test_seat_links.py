"""`guestlab class links` and `guestlab link`: each student's URL and token, rotation."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.classroom.store import ClassStore
from orchestrator.cli import cli
from orchestrator.credentials import Seats
from orchestrator.state import Store


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    db = Store()
    cs = ClassStore(db.db)
    cs.put_class("lab1", scenario_path="x", backend="docker", memory=None, expires=None, tasks=[])
    for i, (sid, name) in enumerate((("ann", "=HYPERLINK(1)"), ("bob", "Bob"), ("cid", "Cid"))):
        cs.put_member("lab1", sid, name, f"{sid}@example.org", f"lab1--{sid}", i)
        if sid != "cid":  # cid's lab never came up
            db.put_lab(
                f"lab1--{sid}",
                scenario="lab1",
                student=sid,
                backends=["docker"],
                scenario_path="x",
                params={},
                status="up",
            )
    yield db
    db.close()


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "250", **os.environ})
    assert result.exit_code == 0, result.output
    return result.output


def test_links_carry_each_students_token_in_every_format(store: Store) -> None:
    rows = json.loads(
        run("class", "links", "lab1", "--base-url", "https://h:8080/", "--format", "json")
    )
    assert [r["student"] for r in rows] == ["ann", "bob", "cid"]
    seats = Seats(store.db)
    for r in rows[:2]:
        assert seats.verify(r["token"]) == f"lab1--{r['student']}"
        assert r["url"] == f"https://h:8080/s/{r['token']}"
    assert rows[2]["url"] == "" and rows[2]["token"] == ""
    table = list(
        csv.DictReader(
            io.StringIO(run("class", "links", "lab1", "--base-url", "http://h", "--format", "csv"))
        )
    )
    assert table[0]["name"] == "'=HYPERLINK(1)"  # no formula for a spreadsheet to run
    assert table[1]["token"] == rows[1]["token"]  # printing again changes nothing
    shown = run("class", "links", "lab1", "--base-url", "http://h")
    assert f"http://h/s/{rows[0]['token']}" in shown and "(no lab up)" in shown


def test_rotating_replaces_the_old_links(store: Store) -> None:
    old = run("link", "lab1", "--student", "ann", "--base-url", "http://h").strip()
    new = run("link", "lab1", "--student", "ann", "--base-url", "http://h", "--rotate").strip()
    assert old != new and new.startswith("http://h/s/")
    seats = Seats(store.db)
    assert seats.verify(old.rsplit("/", 1)[1]) is None
    assert seats.verify(new.rsplit("/", 1)[1]) == "lab1--ann"
    rows = json.loads(
        run("class", "links", "lab1", "--base-url", "http://h", "--format", "json", "--rotate")
    )
    assert rows[0]["url"] != new


def test_links_refuse_what_they_cannot_make(store: Store) -> None:
    for args in (
        ["class", "links", "nope", "--base-url", "http://h"],
        ["link", "lab1", "--student", "cid", "--base-url", "http://h"],
        ["link", "lab1", "--student", "ann", "--base-url", "ftp://h"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0, args
