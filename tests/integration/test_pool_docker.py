"""Pools on the real Docker engine, through the CLI: a claim finishes the student's own lab,
two claims never share one, a killed filler leaves nothing `gc` cannot find, `down` of a
claimed lab and `gc` of an abandoned pool remove every resource.

One small machine without systemd per lab, so that each test stays a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.credentials import Seats
from orchestrator.pool.records import PoolStore
from orchestrator.state import Store
from tests.integration.conftest import GUESTLAB, ROOT, docker_leftovers, engine, guestlab

pytestmark = pytest.mark.docker

SCENARIO = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {{id: {id}, title: A pooled lab}}
parameters:
  code: {{random: hex, length: 16}}
machines: [{{name: box, init: none}}]
setup:
  - machine: box
    run: echo base > /etc/base
  - machine: box
    run: echo "{{{{ params.code }}}}" > /etc/code
tasks:
  - id: answer
    title: Copy the code
    checks: [{{machine: box, file: {{path: /root/answer, contains: "{{{{ params.code }}}}"}}}}]
    solution: [{{machine: box, run: cp /etc/code /root/answer}}]
"""


def scenario(tmp_path: Path, sid: str) -> str:
    path = tmp_path / "scenarios" / f"{sid}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCENARIO.format(id=sid))
    return str(path)


def ok(*args: str) -> str:
    res = guestlab(*args, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def pool_row(sid: str) -> dict[str, int]:
    rows = json.loads(ok("pool", "status", sid, "--format", "json"))
    return rows[0] if rows else {}


def wait_filled(sid: str, ready: int, limit: float = 180) -> None:
    """Until the background refill has made the pool whole again."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        row = pool_row(sid)
        if row.get("ready") == ready and row.get("filling") == 0:
            return
        time.sleep(1)
    pytest.fail(f"the pool of {sid} never got back to {ready} ready: {pool_row(sid)}")


def lab_record(sid: str, student: str) -> dict[str, object]:
    rows = json.loads(ok("status", sid, "--student", student, "--format", "json"))
    assert len(rows) == 1, rows
    return rows[0]


def drain(sid: str, limit: float = 180) -> None:
    """Drain the pool, again while a refill under way finishes the labs it started."""
    deadline = time.monotonic() + limit
    while True:
        ok("pool", "drain", sid)
        left = PoolStore(Store().db).labs(sid)
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"pool labs left after drain: {[lab.key for lab in left]}")
        time.sleep(1)


def test_a_claim_is_the_students_own_lab_with_a_failing_check(tmp_path: Path) -> None:
    engine("docker")
    sid = "pool-claim"
    path = scenario(tmp_path, sid)
    ok("pool", "fill", path, "--size", "1", "--backend", "docker")
    (ready,) = PoolStore(Store().db).labs(sid)
    assert Seats(Store().db).token(ready.key) is None  # no credential before a student
    try:
        out = ok("up", path, "--student", "alice", "--backend", "docker")
        assert "from the pool" in out
        rec = lab_record(sid, "alice")
        assert rec["key"] == ready.key and rec["student"] == "alice"
        code = ok("exec", sid, "box", "--student", "alice", "--", "cat", "/etc/code", "/etc/base")
        assert code.split() == [rec["params"]["code"], "base"]  # type: ignore[index]
        check = guestlab("check", sid, "--student", "alice")
        assert check.returncode == 1, check.stdout + check.stderr
        assert Seats(Store().db).token(ready.key)  # alice's own seat, made at the claim
        wait_filled(sid, 1)  # refilled behind the claim, never with the claimed lab
        assert ready.key not in [lab.key for lab in PoolStore(Store().db).labs(sid)]
        ok("solve", sid, "--student", "alice")
        ok("check", sid, "--student", "alice")
    finally:
        drain(sid)
        ok("down", sid, "--student", "alice")
    assert docker_leftovers(ready.key) == []


def test_two_claims_at_once_never_get_the_same_lab(tmp_path: Path) -> None:
    engine("docker")
    sid = "pool-race"
    path = scenario(tmp_path, sid)
    ok("pool", "fill", path, "--size", "2", "--backend", "docker")
    students = ["bob", "carol"]
    try:
        with ThreadPoolExecutor(2) as ex:
            outs = list(ex.map(lambda s: ok("up", path, "--student", s), students))
        assert all("from the pool" in o for o in outs)
        keys = {lab_record(sid, s)["key"] for s in students}
        assert len(keys) == 2 and all("--pool-" in str(k) for k in keys)
        codes = {ok("exec", sid, "box", "--student", s, "--", "cat", "/etc/code") for s in students}
        assert len(codes) == 2  # each student's own parameter
        wait_filled(sid, 2)
    finally:
        drain(sid)
        for s in students:
            ok("down", sid, "--student", s)


def test_a_killed_fill_leaves_what_gc_finds_and_a_later_claim_is_whole(tmp_path: Path) -> None:
    engine("docker")
    sid = "pool-killed"
    path = scenario(tmp_path, sid)
    filler = subprocess.Popen(
        [*GUESTLAB, "pool", "fill", path, "--size", "1", "--backend", "docker"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    key = ""
    deadline = time.monotonic() + 120
    while not key and time.monotonic() < deadline:  # killed once its machine exists
        labs = PoolStore(Store().db).labs(sid)
        if labs and docker_leftovers(labs[0].key):
            key = labs[0].key
        time.sleep(0.2)
    filler.send_signal(signal.SIGKILL)
    filler.wait()
    assert key, "the filler made no machine"
    try:
        out = ok("up", path, "--student", "dave")  # the half-made lab is not handed out
        assert "from the pool" not in out
        assert "pool lab" in ok("gc")
        assert docker_leftovers(key) == []
        ok("pool", "fill", path, "--size", "1")
        assert "from the pool" in ok("up", path, "--student", "erin")
        assert guestlab("check", sid, "--student", "erin").returncode == 1
    finally:
        drain(sid)
        for s in ("dave", "erin"):
            ok("down", sid, "--student", s)


def test_down_of_a_claimed_lab_and_gc_of_an_abandoned_pool(tmp_path: Path) -> None:
    engine("docker")
    sid = "pool-down"
    path = scenario(tmp_path, sid)
    ok("pool", "fill", path, "--size", "2", "--max-age", "1h")
    claimed = ""
    try:
        assert "from the pool" in ok("up", path, "--student", "frank")
        claimed = str(lab_record(sid, "frank")["key"])
        assert docker_leftovers(claimed)
        ok("down", sid, "--student", "frank")
        assert docker_leftovers(claimed) == []
        assert json.loads(ok("status", sid, "--format", "json")) == []
        wait_filled(sid, 2)
        pools = PoolStore(Store().db)
        left = [lab.key for lab in pools.labs(sid)]
        target = pools.target(sid, "docker")
        assert target is not None
        pools.set_target(replace(target, max_age=0.01))  # nobody claimed them for that long
        assert "pool lab" in ok("gc")
        assert all(docker_leftovers(k) == [] for k in left)
        assert pool_row(sid)["ready"] == 0
    finally:
        drain(sid)
        ok("down", sid, "--student", "frank")
    assert docker_leftovers(claimed) == []


def test_a_lab_whose_setup_names_no_student_is_handed_over_with_no_engine_work(
    tmp_path: Path,
) -> None:
    engine("docker")
    sid = "pool-free"
    path = scenario(tmp_path, sid)
    text = Path(path).read_text()
    Path(path).write_text(
        text.replace('echo "{{ params.code }}" > /etc/code', "echo free > /etc/code")
    )
    ok("pool", "fill", path, "--size", "1")
    try:
        out = ok("up", path, "--student", "gina")
        assert "from the pool) in 0.0 s" in out  # no step ran: clones and snapshot were made
        assert guestlab("check", sid, "--student", "gina").returncode == 1
        ok("reset", sid, "--student", "gina")  # the pool lab's snapshot is the starting state
    finally:
        drain(sid)
        ok("down", sid, "--student", "gina")
