"""Pools on the real Docker engine, through the CLI: a claim finishes the student's own lab,
two claims never share one, `reset` of a claimed lab gives what a cold `up` gives, a killed
filler leaves nothing `gc` cannot find, `down` of a claimed lab and `gc` of an abandoned
pool remove every resource.

Small machines without systemd, and one pool shared by the tests that claim from it (in
file order, on the Docker worker), so that the module stays a few seconds per lab.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.credentials import Seats
from orchestrator.pool.records import PoolStore
from orchestrator.state import Store
from tests.integration.conftest import GUESTLAB, ROOT, docker_leftovers, engine, guestlab
from tests.integration.pool_helpers import drain, ok, pool_row, wait_filled

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


#: a student step (appending, so that a step run twice shows) and a clone that must carry it
CLONED = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {{id: {id}, title: A pooled lab with a clone}}
parameters:
  code: {{random: hex, length: 16}}
machines:
  - {{name: box, init: none}}
  - {{name: copy, clone_of: box}}
setup:
  - machine: box
    run: echo base > /etc/base
  - machine: box
    run: echo "{{{{ params.code }}}}" >> /etc/code
tasks:
  - id: answer
    title: Copy the code in the copy
    checks: [{{machine: copy, file: {{path: /root/answer, contains: "{{{{ params.code }}}}"}}}}]
    solution:
      - {{machine: copy, run: cp /etc/code /root/answer}}
      - {{machine: box, run: echo changed > /etc/base; echo more >> /etc/code}}
"""


def scenario(tmp_path: Path, sid: str, text: str = SCENARIO) -> str:
    path = tmp_path / "scenarios" / f"{sid}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.format(id=sid))
    return str(path)


def lab_record(sid: str, student: str) -> dict[str, object]:
    rows = json.loads(ok("status", sid, "--student", student, "--format", "json"))
    assert len(rows) == 1, rows
    return rows[0]


SHARED = "pool-shared"
CLAIMERS = ("bob", "carol")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A pool of two labs of CLONED, claimed by the tests below in turn."""
    engine("docker")
    path = scenario(tmp_path_factory.mktemp("pool"), SHARED, CLONED)
    ok("pool", "fill", path, "--size", "2", "--backend", "docker", "--max-age", "1h")
    try:
        yield path
    finally:
        drain(SHARED)
        for s in (*CLAIMERS, "cold"):
            ok("down", SHARED, "--student", s)


def both(sid: str, student: str) -> list[str]:
    """/etc/code and /etc/base of the box, /etc/code of the copy, /root/answer's presence."""
    args = ("exec", sid, "--student", student)
    box = ok(*args[:2], "box", *args[2:], "--", "cat", "/etc/code", "/etc/base").split()
    copy = ok(*args[:2], "copy", *args[2:], "--", "sh", "-c", "cat /etc/code; ls /root")
    return [*box, "|", *copy.split()]


def report(sid: str, student: str) -> dict[str, Any]:
    res = guestlab("check", sid, "--student", student, "--format", "json")
    assert res.returncode in (0, 1), res.stdout + res.stderr
    return json.loads(res.stdout)


def verdicts(rep: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    """Each check's task, name, verdict and message: what a student sees, params aside."""
    return [
        (t["id"], c["name"], c["passed"], c["message"]) for t in rep["tasks"] for c in t["checks"]
    ]


def test_two_claims_at_once_get_their_own_labs_with_a_failing_check(shared: str) -> None:
    ready = {lab.key for lab in PoolStore(Store().db).labs(SHARED)}
    assert len(ready) == 2 and all(Seats(Store().db).token(k) is None for k in ready)
    with ThreadPoolExecutor(2) as ex:
        outs = list(ex.map(lambda s: ok("up", shared, "--student", s), CLAIMERS))
    assert all("from the pool" in o for o in outs), outs
    records = [lab_record(SHARED, s) for s in CLAIMERS]
    assert {str(r["key"]) for r in records} == ready  # each its own, both from the pool
    for rec, s in zip(records, CLAIMERS, strict=True):
        code = rec["params"]["code"]
        assert rec["student"] == s and both(SHARED, s) == [code, "base", "|", code]
        assert Seats(Store().db).token(str(rec["key"]))  # the student's own seat
        steps = [e["step"] for e in Store().events(str(rec["key"])) if e["kind"] == "step"]
        # the pool saved the starting state before the student's step; the claim ran that
        # step and the clone, and took no snapshot
        assert steps == ["image", "provision", "setup", "snapshot", "setup", "clone"]
        assert not report(SHARED, s)["passed"]
    # the refill started by the claims never offers a claimed lab again
    assert not ready & {lab.key for lab in PoolStore(Store().db).labs(SHARED)}


def test_reset_of_a_claimed_lab_gives_what_a_cold_up_gives(shared: str) -> None:
    student = CLAIMERS[0]
    code = lab_record(SHARED, student)["params"]["code"]
    ok("up", shared, "--student", "cold", "--no-pool")
    cold = report(SHARED, "cold")
    ok("solve", SHARED, "--student", student)
    assert report(SHARED, student)["passed"]
    assert both(SHARED, student) == [code, "more", "changed", "|", code, "answer"]
    ok("reset", SHARED, "--student", student)
    assert both(SHARED, student) == [code, "base", "|", code]  # the step ran once, again
    after = report(SHARED, student)
    assert not after["passed"] and verdicts(after) == verdicts(cold)
    ok("solve", SHARED, "--student", student)  # and the reset lab is solvable as before
    assert report(SHARED, student)["passed"]


def test_down_of_a_claimed_lab_and_gc_of_an_abandoned_pool(shared: str) -> None:
    claimed = str(lab_record(SHARED, CLAIMERS[1])["key"])
    assert docker_leftovers(claimed)
    ok("down", SHARED, "--student", CLAIMERS[1])
    assert docker_leftovers(claimed) == []
    students = [r["student"] for r in json.loads(ok("status", SHARED, "--format", "json"))]
    assert sorted(students) == [CLAIMERS[0], "cold"]
    wait_filled(SHARED, 2)
    pools = PoolStore(Store().db)
    left = [lab.key for lab in pools.labs(SHARED)]
    target = pools.target(SHARED, "docker")
    assert target is not None and len(left) == 2
    pools.set_target(replace(target, max_age=0.01))  # nobody claimed them for that long
    assert "pool lab" in ok("gc")
    assert all(docker_leftovers(k) == [] for k in left)
    assert pool_row(SHARED)["ready"] == 0
    assert docker_leftovers(str(lab_record(SHARED, CLAIMERS[0])["key"]))  # students' stay


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
