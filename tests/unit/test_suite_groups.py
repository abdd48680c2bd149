"""The suite's engine groups hold under xdist: one engine's tests share one worker.

Tests of one engine share module fixtures (a lab made by one test, destroyed by the last);
split over workers they fail. This runs a small suite with the project's grouping hook.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DOCKER_LANE_TWO, engine_group

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
import pytest

@pytest.mark.docker
@pytest.mark.parametrize("i", range(6))
def test_docker(i): pass

@pytest.mark.lxd
@pytest.mark.parametrize("i", range(6))
def test_lxd(i): pass

@pytest.mark.parametrize("i", range(6))
def test_free(i): pass
"""


def test_each_engines_tests_run_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    (tmp_path / "test_groups.py").write_text(TESTS)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-v", "-p",
         "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    workers: dict[str, set[str]] = {}
    for gw, name, group in re.findall(
        r"\[(gw\d+)\].*PASSED \S+::(test_\w+)\[\d+\](@[\w-]+)?", out.stdout
    ):
        workers.setdefault(name, set()).add(gw)
        if name != "test_free":
            engine = name.removeprefix("test_")
            assert group == "@" + str(engine_group({engine}, "test_groups")), out.stdout
    assert len(workers["test_docker"]) == 1 and len(workers["test_lxd"]) == 1, workers


def test_the_module_that_stops_docker_runs_last_in_its_lane(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    stops = "STOPS_DOCKER = True\n" + TESTS.replace("def test_docker", "def test_stops")
    (tmp_path / "test_engine_stops.py").write_text(stops)
    (tmp_path / "test_scenarios.py").write_text(TESTS)
    (tmp_path / "test_docker_lab.py").write_text(TESTS)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    docker = [
        line
        for line in out.stdout.splitlines()
        if "::test_docker" in line or "::test_stops" in line
    ]
    assert len(docker) == 18, docker
    assert all(line.startswith("test_engine_stops.py") for line in docker[-6:]), docker
    assert not any(line.startswith("test_engine_stops.py") for line in docker[:-6]), docker
    assert engine_group({"docker"}, "test_scenarios") == "docker"
    assert engine_group({"docker"}, "test_engine_stops") == "docker"


def test_docker_lane_two_holds_the_engine_that_the_stopping_module_takes_alone(
    tmp_path: Path,
) -> None:
    """While a lane-two module holds Docker, the module that stops it cannot take it, and
    takes it once that module lets go; two lane-two holders do not wait for each other."""
    from tests.integration.conftest import docker_engine_held

    assert engine_group({"docker"}, DOCKER_LANE_TWO[0]) == "docker-b"
    # a lock file of its own: the host's is held by the suite's own lane two meanwhile
    lock = tmp_path / "docker-engine.lock"

    def stopper_could_take() -> bool:
        with open(lock, "a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    with docker_engine_held(stopping=False, lock_file=lock):
        assert not stopper_could_take()
        with open(lock, "a") as second:  # another lane-two module, e.g. of another run
            fcntl.flock(second, fcntl.LOCK_SH | fcntl.LOCK_NB)
    assert stopper_could_take()
    with (
        docker_engine_held(stopping=True, lock_file=lock),
        open(lock, "a") as lane_two,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(lane_two, fcntl.LOCK_SH | fcntl.LOCK_NB)
