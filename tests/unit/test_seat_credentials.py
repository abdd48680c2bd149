"""A student's token opens their lab only; the store alone does not reveal it."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from orchestrator.credentials import Seats, load_key


@pytest.fixture
def seats(tmp_path: Path) -> Seats:
    db = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    return Seats(db, key=load_key(tmp_path / "seat.key"))


def test_a_token_opens_its_own_lab_and_is_stable(seats: Seats) -> None:
    a, b = seats.issue("lab--ana"), seats.issue("lab--bob")
    assert a != b
    assert seats.verify(a) == "lab--ana" and seats.verify(b) == "lab--bob"
    assert seats.issue("lab--ana") == a == seats.token("lab--ana")


def test_rotating_stops_the_old_token_at_once(seats: Seats) -> None:
    old = seats.issue("lab--ana")
    new = seats.rotate("lab--ana")
    assert new != old
    assert seats.verify(old) is None and seats.verify(new) == "lab--ana"


@pytest.mark.parametrize("bad", ["", "x", "a" * 43, "abcdefghij." + "A" * 32, "../../etc/passwd"])
def test_made_up_tokens_open_nothing(seats: Seats, bad: str) -> None:
    seats.issue("lab--ana")
    assert seats.verify(bad) is None


def test_a_token_with_another_seats_mac_opens_nothing(seats: Seats) -> None:
    a, b = seats.issue("lab--ana"), seats.issue("lab--bob")
    assert seats.verify(a.split(".")[0] + "." + b.split(".")[1]) is None


def test_the_store_alone_does_not_reveal_a_token(tmp_path: Path, seats: Seats) -> None:
    token = seats.issue("lab--ana")
    dump = "\n".join(seats.db.iterdump())
    assert token not in dump and token.split(".")[1] not in dump
    other = Seats(seats.db, key=load_key(tmp_path / "other.key"))  # the store without the key
    assert other.token("lab--ana") != token and other.verify(token) is None


def test_the_key_file_is_private_and_made_once(tmp_path: Path) -> None:
    path = tmp_path / "k" / "seat.key"
    assert load_key(path) == load_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32


def test_forgetting_a_lab_ends_its_token(seats: Seats) -> None:
    token = seats.issue("lab--ana")
    seats.forget("lab--ana")
    assert seats.verify(token) is None
    assert seats.issue("lab--ana") != token


def test_processes_racing_to_make_the_key_all_get_the_same_one(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "race" / "seat.key"
    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: load_key(path), range(64)))
    assert len(keys) == 1 and len(next(iter(keys))) == 32
    assert [p.name for p in path.parent.iterdir()] == ["seat.key"]  # no temporary left
