"""The shared backend mechanics: boot wait, lock, connect-or-raise, error translation."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.backends import common
from orchestrator.backends.common import Verdict
from orchestrator.backends.contract import Availability, LabRef
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
    UsageError,
)

STATES = [
    ("running", Verdict.READY),
    ("degraded", Verdict.READY),
    ("  running\n", Verdict.READY),
    ("initializing", Verdict.WAIT),
    ("starting", Verdict.WAIT),
    ("offline", Verdict.WAIT),  # systemd not yet PID 1's manager: early boot
    ("unknown", Verdict.WAIT),
    ("", Verdict.WAIT),
    ("Failed to connect to bus: No such file or directory", Verdict.WAIT),
    ("maintenance", Verdict.FAILED),
    ("stopping", Verdict.FAILED),
]


@pytest.mark.parametrize(("state", "verdict"), STATES)
def test_each_systemd_state_reads_as_one_verdict(state: str, verdict: Verdict) -> None:
    reading = common.read_state(state)
    assert reading.verdict is verdict
    assert reading.why  # every reading says why, in words


class FakeClock:
    """time.monotonic and time.sleep for a waiter, without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def answers(*said: str) -> Callable[[float], str]:
    """A probe answering `said` in turn, then the last answer for ever."""
    queue = list(said)

    def probe(timeout: float) -> str:
        assert 0 < timeout <= common.PROBE_TIMEOUT
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return probe


def test_the_waiter_returns_once_systemd_is_ready() -> None:
    fake = FakeClock()
    probe = answers("", "offline", "starting", "degraded")
    state = common.wait_for_systemd(
        "machine `db`", probe, timeout=10, clock=fake.clock, sleep=fake.sleep
    )
    assert state == "degraded"
    assert fake.sleeps == 3
    assert fake.now == pytest.approx(3 * common.POLL_INTERVAL)


def test_the_deadline_ends_the_wait_with_the_machine_and_the_last_state() -> None:
    fake = FakeClock()
    with pytest.raises(ProvisioningError) as err:
        common.wait_for_systemd(
            "machine `db` of lab `l`",
            answers("starting"),
            timeout=5,
            hint="look inside",
            clock=fake.clock,
            sleep=fake.sleep,
        )
    message = str(err.value)
    assert "machine `db` of lab `l`" in message and "5 s" in message
    assert "last state: starting" in message
    assert err.value.hint == "look inside"
    assert fake.now <= 5


@pytest.mark.parametrize("state", ["maintenance", "stopping"])
def test_a_state_that_will_not_recover_ends_the_wait_at_once(state: str) -> None:
    fake = FakeClock()
    with pytest.raises(ProvisioningError) as err:
        common.wait_for_systemd(
            "machine `db`", answers("starting", state), clock=fake.clock, sleep=fake.sleep
        )
    assert "machine `db`" in str(err.value) and state in str(err.value)
    assert fake.sleeps == 1


def test_a_machine_that_stops_while_booting_is_unavailable() -> None:
    def gone(_timeout: float) -> str:
        raise MachineUnavailable("it is exited")

    with pytest.raises(MachineUnavailable, match=r"`db` stopped while booting.*it is exited"):
        common.wait_for_systemd("machine `db`", gone, sleep=lambda _s: None)


def test_other_errors_of_the_probe_pass_through() -> None:
    def broken(_timeout: float) -> str:
        raise ProvisioningError("nspawn exited")

    with pytest.raises(ProvisioningError, match="nspawn exited"):
        common.wait_for_systemd("machine `db`", broken, sleep=lambda _s: None)


def test_init_none_waits_only_until_a_command_answers() -> None:
    fake = FakeClock()
    said: list[str | None] = ["exec refused", "exit 126", None]
    common.wait_for_answer(
        "machine `m`", lambda _t: said.pop(0), clock=fake.clock, sleep=fake.sleep
    )
    assert said == [] and fake.sleeps == 2
    with pytest.raises(ProvisioningError, match=r"`m` did not finish .* \(last state: exit 1\)"):
        common.wait_for_answer(
            "machine `m`", lambda _t: "exit 1", timeout=1, clock=fake.clock, sleep=fake.sleep
        )


def test_containers_and_vms_have_one_timeout_each() -> None:
    assert common.CONTAINER_BOOT_TIMEOUT < common.VM_BOOT_TIMEOUT


# -- build once under a lock ------------------------------------------------------------


def test_two_threads_build_once_and_the_second_finds_it_present(tmp_path: Path) -> None:
    product = tmp_path / "image.tar"
    lock = common.lock_path("image", tmp_path)
    started = threading.Event()
    builds: list[str] = []
    results: dict[str, bool] = {}

    def build(who: str) -> Callable[[], None]:
        def run() -> None:
            builds.append(who)
            started.set()
            time.sleep(0.3)  # the other thread arrives meanwhile and must wait
            product.write_text("built")

        return run

    def worker(who: str) -> None:
        results[who] = common.build_once(lock, product.exists, build(who))

    first = threading.Thread(target=worker, args=("first",))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=worker, args=("second",))
    second.start()
    first.join(5)
    second.join(5)
    assert builds == ["first"]
    assert results == {"first": True, "second": False}


def _build_in_process(lock: str, product: str, log: str) -> None:
    def build() -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.3)
        Path(product + ".part").write_text("done")
        Path(product + ".part").rename(product)  # present only when finished

    common.build_once(Path(lock), Path(product).exists, build)


def test_two_processes_build_once(tmp_path: Path) -> None:
    lock, product, log = tmp_path / "x.lock", tmp_path / "x", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_build_in_process, args=(str(lock), str(product), str(log)))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert log.read_text() == "built\n"
    assert product.read_text() == "done"


def test_a_failed_build_leaves_the_lock_free(tmp_path: Path) -> None:
    lock = common.lock_path("x", tmp_path)

    def fail() -> None:
        raise ProvisioningError("debootstrap failed")

    with pytest.raises(ProvisioningError):
        common.build_once(lock, lambda: False, fail)
    assert common.build_once(lock, lambda: False, lambda: None) is True


def test_a_lock_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "x.lock"
    link.symlink_to(target)
    with pytest.raises(OSError), common.file_lock(link):
        pass
    assert target.read_text() == "keep"


# -- refuse what exists ------------------------------------------------------------------


def test_refuse_existing_names_the_machine_and_the_lab() -> None:
    lab = LabRef("web", "ann")
    common.refuse_existing(lab, "db", exists=False)
    with pytest.raises(ProvisioningError) as err:
        common.refuse_existing(lab, "db", exists=True, where="gl-web--ann-db")
    assert str(err.value) == f"machine `db` of lab `{lab.key}` already exists (gl-web--ann-db)"
    assert err.value.hint is not None and "guestlab down" in err.value.hint


# -- connect or raise -------------------------------------------------------------------


class EngineDown(Exception):
    pass


def test_connect_or_raise_hands_the_connection_or_the_fix() -> None:
    assert common.connect_or_raise("the engine", lambda: 42, EngineDown, "start it") == 42

    def down() -> int:
        raise EngineDown("connection refused\nand a page of detail")

    with pytest.raises(BackendUnavailable) as err:
        common.connect_or_raise("the engine", down, EngineDown, "start it")
    assert str(err.value) == "cannot reach the engine (connection refused)"
    assert err.value.hint == "start it"


def test_other_exceptions_are_not_mistaken_for_an_unreachable_engine() -> None:
    def bug() -> int:
        raise KeyError("x")

    with pytest.raises(KeyError):
        common.connect_or_raise("the engine", bug, EngineDown, "start it")


def test_the_connector_connects_once_and_says_the_fix_when_it_cannot() -> None:
    calls: list[int] = []
    usable = [False, True]

    def open_() -> tuple[Availability, str | None]:
        calls.append(1)
        if usable.pop(0):
            return Availability(True, "engine 1.0"), "conn"
        return Availability(False, "no socket", "start it"), None

    connector: common.Connector[str] = common.Connector("Engine", open_)
    with pytest.raises(BackendUnavailable) as err:
        connector.get()
    assert str(err.value) == "Engine: no socket" and err.value.hint == "start it"
    assert connector.current is None
    assert connector.get() == "conn"
    assert connector.get() == "conn"
    assert len(calls) == 2


# -- translate engine errors ------------------------------------------------------------


def test_an_engine_error_becomes_one_sentence_of_ours() -> None:
    err = common.engine_error(EngineDown("500 Server Error\ntrace"), "saving db")
    assert isinstance(err, ProvisioningError)
    assert str(err) == "saving db failed: 500 Server Error"
    gone = common.engine_error(EngineDown(""), "exec in db", kind=BackendUnavailable, hint="fix")
    assert isinstance(gone, BackendUnavailable)
    assert str(gone) == "exec in db failed: EngineDown" and gone.hint == "fix"


def test_engine_errors_translates_only_the_engines_exceptions() -> None:
    translated = pytest.raises(ProvisioningError, match=r"^starting db failed: boom$")
    with translated, common.engine_errors("starting db", EngineDown):
        raise EngineDown("boom")
    # our own errors pass untouched
    with pytest.raises(UsageError, match="ours"), common.engine_errors("starting db", Exception):
        raise UsageError("ours")
    with pytest.raises(KeyError), common.engine_errors("starting db", EngineDown):
        raise KeyError("a bug stays a bug")
