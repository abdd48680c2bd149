"""A class's lifecycle on an in-memory backend: partial failures, memory fit, expiry,
checks, a backend whose root is the host's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator import lab as lifecycle
from orchestrator.classroom import bulk, class_check, copies
from orchestrator.classroom.store import ClassStore
from orchestrator.errors import UsageError
from orchestrator.state import Store, lab_lock
from tests.unit.classroom_fakes import SCENARIO, FakeBackend, roster, use_fake_backend


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    return use_fake_backend(monkeypatch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def test_one_students_failure_does_not_stop_the_others(fake: FakeBackend, store: Store) -> None:
    p = bulk.plan(SCENARIO, roster("ann", "broken1", "cid"), "docker", None)
    outcomes = bulk.up(p, store, parallel=3)
    assert [(o.student, o.ok) for o in outcomes] == [
        ("ann", True),
        ("broken1", False),
        ("cid", True),
    ]
    assert (
        outcomes[1].detail == "setup step 1 on template failed"
        or "no space left" in outcomes[1].detail
    )
    members = {m.student: m for m in ClassStore(store.db).members(SCENARIO)}
    assert members["ann"].status == "up" and members["broken1"].status == "failed"
    assert "no space left" in members["broken1"].error
    # the baseline is what each machine held right after `up`
    assert members["ann"].baseline == {
        "machine-id of template": ["image0"],
        "machine-id of clone": ["image0"],
    }
    # again: the failed lab is retried, the others are left as they are
    outcomes = bulk.up(p, store, parallel=3)
    assert [o.detail for o in outcomes if o.ok] == ["already up", "already up"]


def test_each_student_gets_their_own_parameters(fake: FakeBackend) -> None:
    p = bulk.plan(SCENARIO, roster("ann", "bob"), "docker", None)
    assert p.labs["ann"].params["template_id"] != p.labs["bob"].params["template_id"]
    assert p.labs["ann"].params == lifecycle.prepare(SCENARIO, "ann", None).params


def test_a_class_that_does_not_fit_is_refused_before_anything_exists(
    fake: FakeBackend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "host_memory", lambda _b: (3 * 1024**3, "this host"))
    p = bulk.plan(SCENARIO, roster(*(f"s{n}" for n in range(10))), "docker", None)
    assert p.per_lab == 512 * 1024**2  # two machines of 256M each
    with pytest.raises(UsageError) as exc:
        bulk.up(p, store)
    assert str(exc.value) == (
        "the class does not fit: 10 lab(s) x 512 MiB = 5.0 GiB of memory, and this host has"
        " 3.0 GiB available; nothing was created"
    )
    assert exc.value.hint and exc.value.hint.startswith("6 lab(s) of this size fit")
    assert fake.created == [] and store.labs() == []
    assert ClassStore(store.db).classes() == []


def test_a_class_that_would_exhaust_inotify_instances_is_refused(
    fake: FakeBackend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "inotify_limit", lambda: (128, 40))
    p = bulk.plan(SCENARIO, roster(*(f"s{n}" for n in range(6))), "docker", None)
    with pytest.raises(UsageError) as exc:
        bulk.up(p, store)
    assert str(exc.value) == (
        "the class does not fit: 12 new machine(s) running systemd need about 96 inotify"
        " instances (8 each), and this host allows 128 per user (fs.inotify.max_user_instances)"
        " with 40 in use; nothing was created"
    )
    assert exc.value.hint and exc.value.hint.startswith("room for 11 machine(s) now")
    assert fake.created == []
    monkeypatch.setattr(bulk, "inotify_limit", lambda: (8192, 40))
    assert all(o.ok for o in bulk.up(p, store))


def test_a_local_lxd_class_counts_against_roots_inotify_instances(
    fake: FakeBackend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LXD's containers run in user namespaces that root made: the kernel charges their
    instances to root too, so a local LXD class is refused as a Docker one is."""
    monkeypatch.setattr(fake, "name", "lxd")
    monkeypatch.setitem(backends._cache, "lxd", fake)
    monkeypatch.setattr(bulk, "inotify_limit", lambda: (128, 40))
    monkeypatch.delenv("GUESTLAB_LXD_ENDPOINT", raising=False)
    p = bulk.plan(SCENARIO, roster(*(f"s{n}" for n in range(6))), "lxd", None)
    with pytest.raises(UsageError, match="need about 96 inotify instances"):
        bulk.up(p, store)
    assert fake.created == []
    # a remote LXD's containers count on its own host, not this one's
    monkeypatch.setenv("GUESTLAB_LXD_ENDPOINT", "https://lxd.example.org:8443")
    assert all(o.ok for o in bulk.up(p, store))


def test_memory_per_lab_is_shared_by_its_machines(fake: FakeBackend) -> None:
    p = bulk.plan(SCENARIO, roster("ann"), "docker", bulk.parse_memory("1G"))
    assert [(s.name, s.memory) for s in p.labs["ann"].specs] == [
        ("template", 512 * 1024**2),
        ("clone", 512 * 1024**2),
    ]
    assert p.per_lab == 1024**3
    with pytest.raises(UsageError, match="each machine needs at least 64 MiB"):
        bulk.plan(SCENARIO, roster("ann"), "docker", bulk.parse_memory("100M"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("3h", 10800), ("90m", 5400), ("1.5d", 129600), ("45s", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert bulk.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3", "h", "-1h", "0m", "3 hours"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="is not a duration"):
        bulk.parse_duration(text)


def test_expired_classes_are_removed_by_expire(fake: FakeBackend, store: Store) -> None:
    p = bulk.plan(SCENARIO, roster("ann", "bob"), "docker", None)
    bulk.up(p, store, expires=3600)
    assert bulk.expire(store) == []  # not yet
    store.db.execute("UPDATE classes SET expires=?", (time.time() - 1,))
    assert sorted(bulk.expire(store)) == [f"{SCENARIO}--ann", f"{SCENARIO}--bob"]
    assert fake.machines == {} and store.labs() == []
    assert ClassStore(store.db).klass(SCENARIO).status == "expired"  # type: ignore[union-attr]
    assert bulk.expire(store) == []


def test_a_lab_held_for_a_moment_is_checked_once_free_and_one_held_on_says_by_whom(
    fake: FakeBackend, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another command holding a lab (the student's own check from their seat) does not
    leave it out of the class's gradebook: it is asked again once free."""
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(class_check, "BUSY_PAUSES", (0.2, 0.2))
    p = bulk.plan(SCENARIO, roster("ann", "bob"), "docker", None)
    bulk.up(p, store)
    held = threading.Event()

    def hold(seconds: float) -> None:
        with lab_lock(f"{SCENARIO}--bob"):
            held.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold, args=(0.3,))
    holder.start()
    held.wait()
    book = bulk.check(store, SCENARIO)
    holder.join()
    assert {r["student"]: r["error"] for r in book["students"]} == {"ann": "", "bob": ""}
    # held through every pause: reported busy, naming the command that holds it
    held.clear()
    holder = threading.Thread(target=hold, args=(1.5,))
    holder.start()
    held.wait()
    book = bulk.check(store, SCENARIO)
    holder.join()
    errors = {r["student"]: r["error"] for r in book["students"]}
    assert errors["ann"] == ""
    assert errors["bob"].startswith(f"lab {SCENARIO}--bob is busy: guestlab")
    assert f"(pid {os.getpid()}) is working on it" in errors["bob"]


def test_check_records_each_class_check_and_flags_shared_values(
    fake: FakeBackend, store: Store
) -> None:
    p = bulk.plan(SCENARIO, roster("ann", "bob", "cid"), "docker", None)
    bulk.up(p, store)
    # bob's clone now carries ann's template ID (her per-student parameter): bob is flagged,
    # ann is not (her own value, planted or given, cannot be held against her)
    fake.machines[f"{SCENARIO}--bob"]["clone"] = p.labs["ann"].params["template_id"]
    book = bulk.check(store, SCENARIO)
    # unique-id is graded after a reboot: every student's two machines were restarted
    assert sorted(fake.restarted) == ["clone"] * 3 + ["template"] * 3
    flagged = {r["student"]: r["copies"] for r in book["students"] if r["copies"]}
    assert list(flagged) == ["bob"]
    assert copies.describe(flagged["bob"][0]) == (
        "machine-id of clone holds ann's parameter template_id"
    )
    assert all(r["attempts"] == 0 for r in book["students"])  # the class's checks are not theirs
    again = bulk.check(store, SCENARIO)
    cstore = ClassStore(store.db)
    assert cstore.last_gradebook(SCENARIO)["checked_at"] == again["checked_at"]  # type: ignore[index]
    n = store.db.execute("SELECT COUNT(*) FROM class_checks WHERE class=?", (SCENARIO,)).fetchone()[
        0
    ]
    assert n == 2
    results = store.db.execute(
        "SELECT COUNT(*) FROM class_results WHERE report IS NOT NULL"
    ).fetchone()[0]
    assert results == 6


def test_down_is_idempotent_and_keeps_the_grades(fake: FakeBackend, store: Store) -> None:
    p = bulk.plan(SCENARIO, roster("ann", "bob"), "docker", None)
    bulk.up(p, store)
    bulk.check(store, SCENARIO)
    assert [o.detail for o in bulk.down(store, SCENARIO)] == ["2 machine(s) removed"] * 2
    assert [o.detail for o in bulk.down(store, SCENARIO)] == ["nothing was left"] * 2
    assert bulk.down(store, "no-such-class") == []
    assert fake.machines == {}
    assert ClassStore(store.db).last_gradebook(SCENARIO) is not None


def test_reset_applies_the_class_memory(fake: FakeBackend, store: Store) -> None:
    p = bulk.plan(SCENARIO, roster("ann"), "docker", bulk.parse_memory("768M"))
    bulk.up(p, store)
    fake.created.clear()
    bulk.reset(store, SCENARIO, "ann", lifecycle.Silent())
    assert [s.memory for s in fake.created] == [384 * 1024**2, 384 * 1024**2]
    with pytest.raises(UsageError, match="no student zed in class"):
        bulk.reset(store, SCENARIO, "zed", lifecycle.Silent())


def test_a_class_never_starts_on_a_backend_whose_root_is_the_hosts(
    fake: FakeBackend, store: Store
) -> None:
    fake.risk = "root in a machine is root on this host"
    p = bulk.plan(SCENARIO, roster("ann", "bob"), "docker", None)
    outcomes = bulk.up(p, store, parallel=2)
    assert [o.ok for o in outcomes] == [False, False]
    assert all("root on this host" in o.detail for o in outcomes)
    assert fake.created == []


def test_up_refuses_host_root_unless_accepted_and_says_so(fake: FakeBackend, store: Store) -> None:
    from orchestrator import lab as lifecycle
    from orchestrator.errors import BackendUnavailable

    fake.risk = "root in a machine is root on this host"
    lab = lifecycle.prepare(SCENARIO, "solo", "docker")
    with pytest.raises(BackendUnavailable, match="refusing to start"):
        lifecycle.up(lab, store, lifecycle.Silent())
    assert fake.created == [] and store.lab(lab.ref.key) is None
    lines: list[str] = []

    class Lines(lifecycle.Silent):
        def line(self, text: str) -> None:
            lines.append(text)

    lifecycle.up(lab, store, Lines(), unsafe_host_root=True)
    assert fake.created and any(line.startswith("UNSAFE") for line in lines)
