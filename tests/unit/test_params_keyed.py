"""Per-student parameters are keyed: stable for a student, unguessable by a classmate."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.scenario.load import load_text
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.params import KEY_BYTES, KEY_FILE, derive_params, params_key

SCENARIO = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {id: demo, title: Demo}
parameters:
  template_id: {random: hex, length: 32}
machines:
  - name: web
tasks:
  - id: first
    title: First
    checks:
      - machine: web
        run: "true"
"""


@pytest.fixture
def scenario() -> Scenario:
    return load_text(SCENARIO, "demo.yaml", labs_dir=None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def unkeyed(scenario_id: str, student: str, name: str) -> str:
    """What the first, unkeyed derivation gave: anyone could compute it from three names."""
    seed = b"guestlab-params-v1"
    for part in (scenario_id, student, name):
        raw = part.encode()
        seed += len(raw).to_bytes(4, "big") + raw
    stream = (
        b for n in itertools.count() for b in hashlib.sha256(seed + n.to_bytes(8, "big")).digest()
    )
    span = 1 << 64
    out = ""
    while len(out) < 32:
        value = int.from_bytes(bytes(next(stream) for _ in range(8)), "big")
        if value < span - span % 16:
            out += "0123456789abcdef"[value % 16]
    return out


def test_the_key_is_made_once_private_and_kept(home: Path, scenario: Scenario) -> None:
    first = derive_params(scenario, "alice")
    key_file = home / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == KEY_BYTES
    assert derive_params(scenario, "alice") == first  # stable for a student
    assert key_file.read_bytes() == params_key()
    assert [p.name for p in home.iterdir()] == [KEY_FILE]  # no candidate file left behind


def test_values_depend_on_the_key(home: Path, scenario: Scenario) -> None:
    alice = derive_params(scenario, "alice")["template_id"]
    # what a classmate computes from the names alone is not alice's value any more
    assert alice != unkeyed("demo", "alice", "template_id")
    assert derive_params(scenario, "alice", key=b"\0" * KEY_BYTES)["template_id"] != alice
    assert derive_params(scenario, "alice", key=params_key())["template_id"] == alice
    other_host = derive_params(scenario, "alice", key=os.urandom(KEY_BYTES))
    assert other_host["template_id"] != alice


def test_the_reference_derivation_is_what_the_unkeyed_code_gave() -> None:
    # the helper above must reproduce the old values, or the test before proves nothing
    assert unkeyed("demo", "alice", "template_id") == "7cc9a64d4e8fde8620f2b34e0d028d00"


def _race(home: str, queue: multiprocessing.Queue[bytes], start: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    os.environ["GUESTLAB_HOME"] = home
    start.wait()
    queue.put(params_key())


def test_processes_racing_to_make_the_key_get_the_same_one(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        home = tmp_path / f"home{round_}"
        queue: multiprocessing.Queue[bytes] = ctx.Queue()
        start = ctx.Event()
        procs = [ctx.Process(target=_race, args=(str(home), queue, start)) for _ in range(8)]
        for p in procs:
            p.start()
        start.set()
        keys = {queue.get(timeout=20) for _ in procs}
        for p in procs:
            p.join(timeout=20)
        assert len(keys) == 1 and (home / KEY_FILE).read_bytes() in keys
        assert sorted(p.name for p in home.iterdir()) == [KEY_FILE]


def test_a_damaged_key_is_refused_with_a_sentence(home: Path, scenario: Scenario) -> None:
    home.mkdir(parents=True)
    (home / KEY_FILE).write_bytes(b"short")
    with pytest.raises(StateError, match="is damaged"):
        derive_params(scenario, "alice")


def test_a_key_others_could_read_is_closed_again(home: Path) -> None:
    key = params_key()
    (home / KEY_FILE).chmod(0o644)
    assert params_key() == key
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600


def test_a_home_that_cannot_be_written_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot read or make the parameter key"):
        params_key(blocker / "home")
