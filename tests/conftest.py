"""Shared test set-up: each test session gets its own state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: VM test modules of lane one. The lanes took 8.3 and 14.9 minutes in the last full run;
#: data-disk adds its tests (6.1 min measured alone, under load) here and its proof in
#: test_scenarios (5.6 min) to lane two, about 14 and 21 minutes, where both in lane two
#: would make it the suite's tail at 27
VM_LANE_ONE = ("test_vagrant_backend", "test_data_disk")
#: Docker test modules of lane two, which a worker takes once its own engine's lane is done
#: (LXD's and nspawn's end first): on 2026-12-03 Docker's one lane was the suite's tail
#: (26.6 min). Measured alone, the hostile class mostly waits (a machine that never boots,
#: probes that time out: 203 s for 50 CPU-seconds), the faults compute (100 s for 81; 172
#: s in the lane). The engine stays shared with lane one: integration/conftest.py holds it
#: for them, and the module that stops Docker waits until they are done.
DOCKER_LANE_TWO = ("test_hostile_output", "test_faults")


def engine_group(marks: set[str], module: str = "") -> str | None:
    """The xdist group of a test with these marks, in this test module.

    A test that uses Docker goes to one of Docker's two lanes, a VM beside its containers
    included: lane two's modules wait more than they compute, and run while another
    engine's lane is over. Two Docker lanes side by side from the start were tried on
    2026-12-01 and 2026-12-02: each took as long as the one had, since the two cores were
    already saturated, and the VM lanes beside them slowed by a third.
    The other tests that boot VMs go to two lanes of their own: VMs under software
    emulation are CPU-bound, and two at a time is what two cores run without thrashing.
    """
    if "docker" in marks:
        return "docker-b" if module in DOCKER_LANE_TWO else "docker"
    if "vagrant" in marks:
        # lane one: the backend's own tests, which run the contract on their VMs, and the
        # data-disk lab's (its proof, in test_scenarios, is lane two's); lane two: the VM
        # labs and the VMs beside LXD and nspawn containers
        return "vagrant" if module in VM_LANE_ONE else "vagrant-b"
    for engine in ("lxd", "nspawn"):
        if engine in marks:
            return engine
    return None


#: the modules with tests on lane vagrant-b's one shared VM (integration/conftest.guest_vm)
GUEST_VM_MODULES = ("test_guest_drivers", "test_seat_engines", "test_ssh_door")
#: the tests on the three-member LXD cluster (scripts/lxd-cluster.sh), which name this
#: group themselves: 7.4 minutes beside the LXD tests on 2026-12-01, so the worker that
#: ends its engine first takes them instead of the LXD lane growing by as much
CLUSTER_GROUP = "lxd-cluster"
#: the groups in the order they start: the longest first, so that none is the tail; with
#: five workers the first five start at once, the others as workers come free
GROUP_ORDER = ("vagrant", "vagrant-b", "docker", "lxd", "nspawn", "docker-b", CLUSTER_GROUP)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every engine test in its engine's xdist group: tests of one engine run in
    order on one worker (they share its daemon, networks and images), engines side by
    side, the VM group first. A test that names its group itself keeps it."""
    rank: dict[int, tuple[int, bool, int]] = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        group = mark.args[0] if mark and mark.args else None
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if mark is None:
            group = engine_group({m.name for m in item.iter_markers()}, module)
            if group:
                item.add_marker(pytest.mark.xdist_group(group))
        order = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
        # a module that stops the Docker engine runs last in its lane, so that a Docker
        # test of another lane waits for it once, near the end, rather than from the start;
        # the tests on the lane's shared VM one after another (integration/conftest.guest_vm)
        shared = group == "vagrant-b" and module in GUEST_VM_MODULES
        rank[id(item)] = (
            order,
            bool(getattr(item.module, "STOPS_DOCKER", False)),
            GUEST_VM_MODULES.index(module) + 1 if shared else 0,
        )
    items.sort(key=lambda item: rank[id(item)])  # stable: each group keeps its order


@pytest.fixture(scope="session", autouse=True)
def guestlab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private GUESTLAB_HOME; built images stay shared so they are built once per host."""
    from orchestrator import paths

    images = os.environ.get("GUESTLAB_IMAGES") or str(paths.home() / "images")
    home = tmp_path_factory.mktemp("guestlab-home")
    os.environ["GUESTLAB_HOME"] = str(home)
    os.environ["GUESTLAB_IMAGES"] = images
    os.environ["GUESTLAB_SCENARIOS"] = str(ROOT / "scenarios")
    return home


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The time each engine group took (its tests run one after another on one worker),
    so that the group that sets the suite's length is seen in every run."""
    totals: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            suffix = report.nodeid.rsplit("@", 1)[-1]
            group = suffix if suffix in GROUP_ORDER else "ungrouped"
            totals[group] = totals.get(group, 0.0) + report.duration
    if totals:
        terminalreporter.section("time per engine group")
        for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{group:>10}: {seconds / 60:5.1f} min")
