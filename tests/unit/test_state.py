"""The state store and the per-lab lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import state
from orchestrator.errors import LabBusy, StateError
from orchestrator.report import CheckResult, Report, TaskResult
from orchestrator.state import Store, lab_lock


def test_labs_attempts_and_hints_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.put_lab(
        "k",
        scenario="sc",
        student="al",
        backends=["docker"],
        scenario_path="/x.yaml",
        params={"p": "1"},
        status="provisioning",
    )
    store.set_status("k", "up")
    rec = store.lab("k")
    assert rec is not None and rec.status == "up" and rec.params == {"p": "1"}
    store.add_attempt(
        "k",
        Report.now(
            "s",
            "u",
            "docker",
            [
                TaskResult("a", "A", 1, [CheckResult("c", True)]),
                TaskResult("b", "B", 2, [CheckResult("c", False, "no")]),
            ],
        ),
    )
    store.add_hint("k", "t", 0)
    assert store.hints_taken("k", "t") == 1
    store.delete_lab("k")
    assert store.lab("k") is None
    # history outlives the lab, so that a grade can be explained later
    assert store.attempts("k")[0].report.score == 1


def test_a_corrupt_database_is_a_state_error_with_a_way_out(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as exc:
        Store(db)
    assert "cannot be used" in str(exc.value)
    assert exc.value.hint and "guestlab gc" in exc.value.hint


def test_the_lab_lock_excludes_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    probe = (
        "from orchestrator.state import lab_lock\n"
        "from orchestrator.errors import LabBusy\n"
        "try:\n    with lab_lock('k'): print('got it')\n"
        "except LabBusy as e: print(e)\n"
    )
    with lab_lock("k"):
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "is busy: guestlab" in held.stdout
    assert f"(pid {os.getpid()}) is working on it" in held.stdout
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert free.stdout.strip() == "got it"


def test_a_lock_names_the_command_that_holds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["guestlab", "class", "check", "machine-id-clone"])
    assert state._holder_name() == f"guestlab class check (pid {os.getpid()})"
    monkeypatch.setattr(sys, "argv", ["guestlab", "--lang", "pt_BR", "check"])
    assert state._holder_name() == f"guestlab (pid {os.getpid()})"  # no option's value


def test_the_lock_is_not_reentrant_across_open_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    with lab_lock("k"), pytest.raises(LabBusy), lab_lock("k"):
        pass


def test_a_store_of_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE labs (key TEXT PRIMARY KEY, scenario TEXT NOT NULL, student TEXT NOT NULL,"
        " backend TEXT NOT NULL, scenario_path TEXT NOT NULL, params TEXT NOT NULL,"
        " status TEXT NOT NULL, step TEXT NOT NULL DEFAULT '', created REAL NOT NULL,"
        " updated REAL NOT NULL);"
        "INSERT INTO labs VALUES ('k','sc','al','lxd','/x.yaml','{}','up','',1,1);"
    )
    old.commit()
    old.close()
    store = Store(db)
    rec = store.lab("k")
    assert rec is not None and rec.backends == ["lxd"] and rec.backend == "lxd"
    store.put_lab(
        "k2",
        scenario="sc",
        student="bo",
        backends=["docker", "vagrant"],
        scenario_path="/x.yaml",
        params={},
        status="up",
    )
    rec2 = store.lab("k2")
    assert rec2 is not None and rec2.backends == ["docker", "vagrant"]


def test_a_current_store_is_opened_and_read_without_a_write(tmp_path: Path) -> None:
    """`status` and `check` until it grades only read: opening the store writes nothing,
    so nothing is synced to the disk (a write costs a lab command milliseconds of fsync)."""
    db = tmp_path / "s.db"
    Store(db).close()  # made, at the current schema
    before = db.stat().st_mtime_ns, db.read_bytes()
    store = Store(db)
    assert store.lab("k") is None and store.labs() == []
    store.close()
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
