"""Self-enrolment's refusals, before any engine work: a closed link, a bad or reserved
name, a name already in the class (never that student's seat), a full class."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.classroom import enrol
from orchestrator.classroom.store import ClassStore
from orchestrator.state import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))

    def no_lab(*_args: object, **_kw: object) -> None:
        raise AssertionError("a refused name must never reach a lab")

    monkeypatch.setattr(enrol.pool, "up", no_lab)
    store = Store(tmp_path / "state.db")
    scenario = str(ROOT / "scenarios" / "machine-id-inspect.yaml")
    opening = enrol.open_class(store, scenario, "docker", cap=2)
    ClassStore(store.db).put_member(opening.class_id, "Ann", "Ann", "", "k--ann", 0)
    return tmp_path / "state.db", opening.secret


@pytest.mark.parametrize(
    ("secret_ok", "student", "why"),
    [
        (False, "zoe", "not open"),
        (True, "-bad", "must be 1-40"),
        (True, "pool-0123", "may not start"),
        (True, "ann", "already in the class"),
        (True, "ANN", "already"),
    ],
)
def test_refused_before_any_lab(
    opened: tuple[Path, str], secret_ok: bool, student: str, why: str
) -> None:
    db, secret = opened
    with pytest.raises(enrol.EnrolRefused, match=why):
        enrol.join(db, secret if secret_ok else secret + "x", student, student)


def test_a_full_class_takes_nobody_more(opened: tuple[Path, str]) -> None:
    db, secret = opened
    store = Store(db)
    ClassStore(store.db).put_member("machine-id-inspect", "bob", "Bob", "", "k--bob", 1)
    with pytest.raises(enrol.EnrolRefused, match="full"):
        enrol.join(db, secret, "carl", "carl")


def test_a_new_link_replaces_the_old_and_closing_stops_it(opened: tuple[Path, str]) -> None:
    db, secret = opened
    store = Store(db)
    scenario = str(ROOT / "scenarios" / "machine-id-inspect.yaml")
    again = enrol.open_class(store, scenario, "docker", cap=5)
    assert enrol.opening_for(store.db, secret) is None
    assert enrol.opening_for(store.db, again.secret) == again
    enrol.close_class(store, again.class_id)
    assert enrol.opening_for(store.db, again.secret) is None
