"""Real-engine fixtures. With CI=true a missing engine fails the run instead of skipping."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import backends, paths
from orchestrator.backends.contract import Backend
from orchestrator.state import Store
from tests.conftest import CLUSTER_GROUP, DOCKER_LANE_TWO

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[2]
GUESTLAB = [sys.executable, "-m", "orchestrator.cli"]


def guestlab(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `guestlab` command as a user would, in this test session's state store."""
    return subprocess.run(
        [*GUESTLAB, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


#: the marks of the test being set up or run, fixtures of a wider scope included
RUNNING_MARKS: set[str] = set()


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    RUNNING_MARKS.clear()
    RUNNING_MARKS.update(m.name for m in item.iter_markers())


def engine(name: str) -> Backend:
    """The named backend if its engine answers; otherwise skip, or fail under CI.

    A test must carry its engine's mark: the mark puts it in that engine's xdist group,
    and a Docker test outside Docker's lanes can run while another test stops Docker.
    """
    if name not in RUNNING_MARKS:
        pytest.fail(f"this test uses {name} without @pytest.mark.{name}")
    try:
        backend = backends.get(name)
        avail = backend.availability()
    except ImportError as e:
        avail = None
        reason = f"{name}: Python package missing ({e.name})"
    else:
        reason = f"{name}: {avail.detail} ({avail.fix})"
    if avail is None or not avail.usable:
        if IN_CI:
            pytest.fail(f"CI=true and the {reason}")
        pytest.skip(reason)
    return backend


@contextlib.contextmanager
def docker_engine_held(*, stopping: bool, lock_file: Path | None = None) -> Iterator[None]:
    """Docker's engine held for a module: shared by the modules of Docker's lane two,
    alone by a module that stops the engine, which so waits until lane two's module ends
    (host-wide, as the engine is)."""
    path = lock_file or paths.host_locks_dir() / "guestlab-tests-docker-engine.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if stopping else fcntl.LOCK_SH)
        yield  # closing the file lets go of the lock


@pytest.fixture(scope="module", autouse=True)
def docker_engine_lane(request: pytest.FixtureRequest) -> Iterator[None]:
    """Lane two's Docker modules run beside lane one's, never while it stops the engine."""
    stopping = bool(getattr(request.module, "STOPS_DOCKER", False))
    if not stopping and request.module.__name__.rsplit(".", 1)[-1] not in DOCKER_LANE_TWO:
        yield
        return
    with docker_engine_held(stopping=stopping):
        yield


def student_id() -> str:
    """A random student id, so that parallel or leftover runs never collide."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def docker_backend() -> Iterator[Backend]:
    yield engine("docker")


def docker_leftovers(key: str) -> list[str]:
    """Every Docker resource that still carries the lab's label."""
    import docker

    from orchestrator.backends.contract import LABEL_LAB

    c = docker.from_env()
    flt = {"label": f"{LABEL_LAB}={key}"}
    found = [f"container {x.name}" for x in c.containers.list(all=True, filters=flt)]
    found += [f"network {x.name}" for x in c.networks.list(filters=flt)]
    found += [f"volume {x.name}" for x in c.volumes.list(filters=flt)]
    found += [f"image {x.tags}" for x in c.images.list(filters=flt)]
    return found


def wait_for_step(
    key: str, steps: set[str], proc: subprocess.Popen[str], limit: float = 300
) -> str:
    """Poll the state store until the lab's `up` is inside one of `steps`; return it."""
    store = Store()
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            record = store.lab(key)
            if record and record.status == "provisioning" and record.step in steps:
                return record.step
            time.sleep(0.01)
    finally:
        store.close()
    raise AssertionError(f"`up` never reached {steps} (exit {proc.poll()})")


#: the guest-drivers lab whose one VM the VM tests of lane vagrant-b share, while it is up:
#: {"lab": ModuleLab, "stack": ExitStack}
_GUEST_VM: dict[str, Any] = {}


@pytest.fixture
def guest_vm() -> Any:
    """The guest-drivers lab on one VM (a module_lab.ModuleLab), up once for every test that
    uses it: that lab's wrong answers and imitations, and the doors' VM tests.

    A VM's boot and `down` cost about a minute and a half of both cores under emulation.
    The tests leave the VM as they found it (each imitation is undone, `prove` ends with a
    reset; a door only opens a shell), and those that reboot or tamper for good make
    their own. It goes when the next test of this worker does not use it.
    """
    engine("vagrant")
    if not _GUEST_VM:
        from tests.integration.module_lab import module_lab  # it imports this module

        stack = contextlib.ExitStack()
        _GUEST_VM["lab"] = stack.enter_context(module_lab("guest-drivers", "vagrant"))
        _GUEST_VM["stack"] = stack
    return _GUEST_VM["lab"]


def _down_guest_vm() -> None:
    if _GUEST_VM:
        stack = _GUEST_VM.pop("stack")
        _GUEST_VM.clear()
        stack.close()  # `down`, then module_lab's check that nothing is left


@pytest.fixture
def vm_seat(guest_vm: Any) -> tuple[str, str]:
    """(student, seat token) of the shared guest-drivers VM."""
    from orchestrator.credentials import Seats

    ref = guest_vm.lab.ref
    store = Store()
    try:
        return ref.student, Seats(store.db).issue(ref.key)
    finally:
        store.close()


#: the cluster of this worker, while it is up: {"cluster": Cluster, "state": Path}
_CLUSTER: dict[str, Any] = {}


@pytest.fixture(scope="module")
def lxd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The three-member LXD cluster of scripts/lxd-cluster.sh (tests/integration/lxd_cluster.py).

    Made by the first test of its group that needs it, removed when this worker moves on
    to another group: an idle cluster is three LXD daemons that keep the two cores busy
    for the rest of the suite.
    """
    from tests.integration import lxd_cluster as glc

    engine("lxd")
    if not _CLUSTER:
        state = tmp_path_factory.mktemp("lxd-cluster")
        try:
            cluster = glc.start(state)
        except BaseException:
            # a cluster half made (its members, its bridge) must not outlive the failure
            with contextlib.suppress(subprocess.SubprocessError):
                glc.stop(state)
            raise
        _CLUSTER.update(cluster=cluster, state=state)
    return _CLUSTER["cluster"]


def _stop_cluster() -> None:
    from tests.integration import lxd_cluster as glc

    if _CLUSTER:
        state = _CLUSTER.pop("state")
        _CLUSTER.clear()
        glc.stop(state)


def _in_cluster_group(item: pytest.Item) -> bool:
    return any(m.args[:1] == (CLUSTER_GROUP,) for m in item.iter_markers("xdist_group"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield  # the module's fixtures are gone when the next test is of another module
    if _GUEST_VM and (nextitem is None or "guest_vm" not in nextitem.fixturenames):
        _down_guest_vm()
    if _CLUSTER and (
        nextitem is None or (not _in_cluster_group(nextitem) and nextitem.module is not item.module)
    ):
        _stop_cluster()


def pytest_sessionfinish() -> None:
    _down_guest_vm()
    _stop_cluster()
