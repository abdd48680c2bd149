"""The SSH door without an engine: user names, which lab a proof opens, roster keys, the
class store's migration, the host key and the guessing limit."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from orchestrator.classroom.roster import RosterError, parse
from orchestrator.classroom.store import ClassStore
from orchestrator.credentials import Seats
from orchestrator.state import Store
from orchestrator.web.access import Seat, read_only
from orchestrator.web.in_machine import marked_argv as inner_argv
from orchestrator.web.ssh_auth import (
    Attempts,
    Login,
    host_key,
    labs_named,
    parse_username,
    seat_by_token,
    seats_by_key,
)
from orchestrator.web.ssh_session import exit_code


def a_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def public_line(key: asyncssh.SSHKey, comment: str = "ann@laptop") -> str:
    return key.export_public_key().decode().strip() + f" {comment}"


# -- user names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("username", "login"),
    [
        ("alice", Login("alice", None)),
        ("alice+clone", Login("alice", "clone")),
        ("Ann.Lee_2", Login("Ann.Lee_2", None)),
        ("machine-id-clone--alice", Login("machine-id-clone--alice", None)),
        ("machine-id-clone--alice+web-1", Login("machine-id-clone--alice", "web-1")),
    ],
)
def test_user_names_say_the_lab_and_the_machine(username: str, login: Login) -> None:
    assert parse_username(username) == login


@pytest.mark.parametrize(
    "username",
    ["", "+clone", "alice+", "alice+Clone", "alice+a+b", "-alice", "al ice", "a/b", "x" * 101],
)
def test_other_user_names_are_refused_with_the_grammar(username: str) -> None:
    with pytest.raises(ValueError, match="STUDENT\\+MACHINE"):
        parse_username(username)


# -- which lab a proof opens ---------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    for scenario, student in [("one", "alice"), ("two", "alice"), ("one", "bob")]:
        s.put_lab(
            f"{scenario}--{student}",
            scenario=scenario,
            student=student,
            backends=["docker"],
            scenario_path=f"/{scenario}.yaml",
            params={},
            status="up",
        )
    yield s
    s.close()


def test_a_student_id_names_each_of_their_labs_and_a_lab_key_one(store: Store) -> None:
    assert [s.lab for s in labs_named(store.db, "alice")] == ["one--alice", "two--alice"]
    assert [s.lab for s in labs_named(store.db, "ALICE")] == ["one--alice", "two--alice"]
    assert labs_named(store.db, "two--alice") == [Seat("two--alice", "two", "alice")]
    assert labs_named(store.db, "carol") == []


def test_a_token_opens_its_own_lab_under_its_students_names_only(store: Store) -> None:
    seats = Seats(store.db)
    alice_two, bob = seats.issue("two--alice"), seats.issue("one--bob")
    db = read_only(store.path)
    assert seat_by_token(db, "alice", alice_two) == Seat("two--alice", "two", "alice")
    assert seat_by_token(db, "two--alice", alice_two) == Seat("two--alice", "two", "alice")
    assert seat_by_token(db, "one--alice", alice_two) is None  # her other lab's name
    assert seat_by_token(db, "alice", bob) is None  # another student's token
    assert seat_by_token(db, "bob", bob) == Seat("one--bob", "one", "bob")
    # one character changed (to one it is not: a random token may well end in "x")
    other = "y" if alice_two.endswith("x") else "x"
    assert seat_by_token(db, "alice", alice_two[:-1] + other) is None
    assert seat_by_token(db, "alice", "") is None


def test_a_roster_key_opens_the_labs_of_its_line(store: Store) -> None:
    mine, other = a_key(), a_key()
    cs = ClassStore(store.db)
    for klass, lab in [("one", "one--alice"), ("two", "two--alice")]:
        cs.put_class(
            klass, scenario_path="x", backend="docker", memory=None, expires=None, tasks=[]
        )
        cs.put_member(klass, "alice", "Alice", "", lab, 0, ssh_key=public_line(mine))
    cs.put_member("one", "bob", "Bob", "", "one--bob", 1)  # no key: password only
    db = read_only(store.path)
    assert [s.lab for s in seats_by_key(db, "alice", mine)] == ["one--alice", "two--alice"]
    assert [s.lab for s in seats_by_key(db, "two--alice", mine)] == ["two--alice"]
    assert seats_by_key(db, "alice", other) == []
    assert seats_by_key(db, "bob", mine) == []


def test_keys_open_nothing_in_a_store_without_classes(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    s.close()
    assert seats_by_key(read_only(tmp_path / "state.db"), "alice", a_key()) == []


# -- the roster's ssh_key column -----------------------------------------------------------------
def test_a_roster_may_give_each_student_a_public_key() -> None:
    key = public_line(a_key())
    students = parse(f'id,name,email,ssh_key\nann,Ann,,"{key}"\nbob,Bob,,\n', "class.csv")
    assert [(s.id, s.ssh_key) for s in students] == [("ann", key), ("bob", "")]
    assert parse("id,name,email\nann,Ann,\n")[0].ssh_key == ""


def test_a_bad_key_is_refused_with_its_line_and_a_private_key_is_not_repeated() -> None:
    private = a_key().export_private_key().decode()
    text = (
        f'ssh_key,id,name,email\nnot a key,ann,Ann,\n"{private}",bob,Bob,\n'
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbroken,cid,Cid,\n"
    )
    with pytest.raises(RosterError) as exc:
        parse(text, "class.csv")
    got = exc.value.problems
    last = 4 + private.count("\n")  # the line after the quoted key, which spans lines
    assert [p.split(":")[1] for p in got] == ["2", "3", str(last)]
    assert all("ssh_key is not an OpenSSH public key line" in p for p in got)
    assert "PRIVATE KEY" not in "".join(got)


def test_a_key_from_ssh_keygen_is_accepted(tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    line = (tmp_path / "k.pub").read_text().strip()
    assert parse(f"id,name,email,ssh_key\nann,Ann,,{line}\n")[0].ssh_key == line


# -- the class store of an older guestlab --------------------------------------------------------
OLD_MEMBERS = """
CREATE TABLE class_members (
    class TEXT NOT NULL, student TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
    lab TEXT NOT NULL, position INTEGER NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', baseline TEXT NOT NULL DEFAULT '{}', updated REAL NOT NULL,
    PRIMARY KEY (class, student)
);
INSERT INTO class_members VALUES ('one', 'ann', 'Ann', '', 'one--ann', 0, 'up', '', '{}', 1.0);
"""


def test_a_store_from_before_the_door_gains_the_key_column(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.put_lab(
        "one--ann", scenario="one", student="ann", backends=["docker"], scenario_path="x",
        params={}, status="up",
    )  # fmt: skip
    db = store.db
    db.executescript(OLD_MEMBERS)
    assert seats_by_key(db, "ann", a_key()) == []  # read before migrating: nothing, no error
    cs = ClassStore(db)
    assert [(m.student, m.status, m.ssh_key) for m in cs.members("one")] == [("ann", "up", "")]
    key = public_line(a_key())
    cs.put_member("one", "ann", "Ann", "", "one--ann", 0, ssh_key=key)
    assert cs.members("one")[0].ssh_key == key
    ClassStore(db)  # migrating again changes nothing
    assert cs.members("one")[0].ssh_key == key


# -- the host key, the guessing limit, what runs in the machine -----------------------------------
def test_the_host_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    first = host_key(tmp_path / "home")
    path = tmp_path / "home" / "ssh_door_host_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert host_key(tmp_path / "home").public_data == first.public_data


def test_an_address_that_keeps_failing_is_blocked_then_forgiven() -> None:
    attempts = Attempts(limit=3, window=0.2)
    for _ in range(3):
        assert not attempts.blocked("10.0.0.1")
        attempts.failed("10.0.0.1")
    assert attempts.blocked("10.0.0.1") and not attempts.blocked("10.0.0.2")
    import time

    time.sleep(0.25)
    assert not attempts.blocked("10.0.0.1")


def test_what_runs_in_the_machine_carries_the_sessions_marker() -> None:
    assert inner_argv("m1", None, "xterm-256color") == [
        "env", "GUESTLAB_SESSION=m1", "TERM=xterm-256color", "/bin/bash", "-l",
    ]  # fmt: skip
    assert inner_argv("m2", "hostname; exit 3", None) == [
        "env", "GUESTLAB_SESSION=m2", "/bin/bash", "-c", "hostname; exit 3",
    ]  # fmt: skip
    assert inner_argv("m3", None, "x; rm -rf /")[2] == "TERM=xterm"
    assert [exit_code(0), exit_code(7), exit_code(-9), exit_code(None)] == [0, 7, 137, 255]
