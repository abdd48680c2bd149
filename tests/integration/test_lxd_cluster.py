"""A class on a real three-member LXD cluster (scripts/lxd-cluster.sh), a member lost
mid-class and back: one test, as the steps depend on each other and the cluster is dear."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLUSTER_GROUP
from tests.integration.conftest import GUESTLAB, guestlab, student_id
from tests.integration.lxd_cluster import MEMBERS, Cluster

pytestmark = [pytest.mark.lxd, pytest.mark.xdist_group(CLUSTER_GROUP)]

SCENARIO = "machine-id-clone"


def run(cluster: Cluster, *args: str) -> str:
    res = guestlab(*args, env={**cluster.env, "COLUMNS": "200"}, timeout=900)
    assert res.returncode == 0, f"guestlab {' '.join(args)}: {res.stdout}{res.stderr}"
    return res.stdout


def book(cluster: Cluster) -> tuple[int, dict[str, Any]]:
    res = guestlab("class", "check", SCENARIO, "--format", "json", env=cluster.env, timeout=900)
    rows = {r["student"]: r for r in json.loads(res.stdout)["students"]}
    return res.returncode, rows


def where(cluster: Cluster) -> dict[str, str]:
    status = json.loads(run(cluster, "class", "status", SCENARIO, "--format", "json"))
    return {r["student"]: r["lxd_member"] for r in status["students"]}


def test_a_class_spreads_over_the_cluster_and_survives_a_member_lost(
    lxd_cluster: Cluster, tmp_path: Path, record_property: Any
) -> None:
    cluster = lxd_cluster
    record_property("cluster_setup_s", round(cluster.setup_seconds, 1))
    students = [student_id() for _ in range(9)]
    roster = tmp_path / "class.csv"
    pinned = {0: "glc-3", 1: "glc-2"}  # the roster's lxd_target; glc-2 is lost below
    lines = [f"{s},Student {s},,{pinned.get(n, '')}" for n, s in enumerate(students)]
    roster.write_text("id,name,email,lxd_target\n" + "\n".join(lines) + "\n")
    stopped: list[str] = []
    try:
        run(cluster, "class", "up", SCENARIO, "--roster", str(roster), "--backend", "lxd",
            "--parallel", "9")  # fmt: skip
        placed = where(cluster)
        assert (placed[students[0]], placed[students[1]]) == ("glc-3", "glc-2")
        assert set(placed.values()) == set(MEMBERS), placed  # LXD spread the others
        # each lab's machine and its clone (an LXD copy) are on one member
        members_of = cluster.labs()
        assert len(members_of) == 9 and all(len(m) == 1 for m in members_of.values())
        # a piped `exec` runs LXD's own client, aimed at the cluster (remote_cli.py)
        piped = subprocess.run(
            [*GUESTLAB, "exec", SCENARIO, "clone", "--student", students[1], "--", "sh", "-c",
             "cat > /root/piped"],
            input="through the cluster\n", capture_output=True, text=True, timeout=300,
            env={**os.environ, **cluster.env},
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        said = run(cluster, "exec", SCENARIO, "clone", "--student", students[1], "--", "cat",
                   "/root/piped")  # fmt: skip
        assert said == "through the cluster\n"
        run(cluster, "solve", SCENARIO, "--student", students[0])
        code, rows = book(cluster)
        assert code == 0, {s: r["error"] for s, r in rows.items() if r["error"]}
        assert rows[students[0]]["total"] == rows[students[0]]["max_total"]

        # a member lost mid-class: the others are graded, its labs are unreachable
        lost = "glc-2"
        on_lost = [s for s in students if placed[s] == lost]
        cluster.member("stop", lost)
        stopped.append(lost)
        started = time.monotonic()
        code, rows = book(cluster)
        record_property("member_lost_to_gradebook_s", round(time.monotonic() - started, 1))
        assert code != 0, rows
        for s in students:
            if s in on_lost:
                assert rows[s]["error"].startswith(f"unreachable (member {lost} offline)")
                assert all(t["state"] != "fail" for t in rows[s]["tasks"].values())
            else:
                assert not rows[s]["error"], rows[s]
        assert rows[students[0]]["total"] == rows[students[0]]["max_total"]
        cluster.wait_for(lost, "Offline")
        assert all(where(cluster)[s] == f"{lost} (offline)" for s in on_lost)

        # `class up` again: only those labs, made again on the other members
        out = run(cluster, "class", "up", SCENARIO, "--roster", str(roster), "--backend", "lxd")
        assert out.count("already up") == len(students) - len(on_lost)
        assert out.count(f"{lost} is offline") == 1  # the student pinned to it, told
        moved = where(cluster)
        assert all(moved[s] in set(MEMBERS) - {lost} for s in on_lost), moved
        code, rows = book(cluster)
        assert code == 0, {s: r["error"] for s, r in rows.items() if r["error"]}
        assert rows[students[0]]["total"] == rows[students[0]]["max_total"]

        # the member back: `class down` removes what was left on it too
        cluster.member("start", lost)
        stopped.remove(lost)
        cluster.wait_for(lost, "Online")
    finally:
        for member in stopped:  # a failure above leaves no member down for the next test
            cluster.member("start", member)
            cluster.wait_for(member, "Online")
        run(cluster, "class", "down", SCENARIO)
        run(cluster, "gc")
    run(cluster, "image", "rm", "debian-12-systemd", "--backend", "lxd")
    assert cluster.locations() == {}
    assert cluster.query("/1.0/images") == []
    assert cluster.volumes() == []
