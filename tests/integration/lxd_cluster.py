"""The three-member LXD cluster of scripts/lxd-cluster.sh, for the tests that need one.

Made by the first test of its group that needs it (12-13 s from nothing on this host on
2026-12-01, 3 s when it is already there) and removed when its worker leaves the group,
unless GLC_KEEP=1 (then `scripts/lxd-cluster.sh down` removes it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.backends.lxd import LxdBackend

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "lxd-cluster.sh"
MEMBERS = ("glc-1", "glc-2", "glc-3")


@dataclass
class Cluster:
    env: dict[str, str]  # GUESTLAB_LXD_* pointing at the cluster
    setup_seconds: float

    def lxc(self, *args: str, member: str = "glc-1", timeout: float = 120) -> str:
        """`lxc ARGS` run on a member (its own client, its unix socket)."""
        res = subprocess.run(
            ["lxc", "exec", member, "--", "lxc", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, f"lxc {' '.join(args)} on {member}: {res.stderr}"
        return res.stdout

    def query(self, path: str) -> object:
        return json.loads(self.lxc("query", path))

    def states(self) -> dict[str, str]:
        members = self.query("/1.0/cluster/members?recursion=1")
        assert isinstance(members, list)
        return {m["server_name"]: m["status"] for m in members}

    def locations(self) -> dict[str, str]:
        """Instance name -> member, for every instance of the cluster."""
        found = self.query("/1.0/instances?recursion=1")
        assert isinstance(found, list)
        return {i["name"]: i["location"] for i in found}

    def labs(self) -> dict[str, set[str]]:
        """guestlab's lab key -> the members its instances are on."""
        found = self.query("/1.0/instances?recursion=1")
        assert isinstance(found, list)
        out: dict[str, set[str]] = {}
        for i in found:
            key = (i.get("config") or {}).get("user.guestlab.lab")
            if key:
                out.setdefault(key, set()).add(i["location"])
        return out

    def volumes(self) -> list[str]:
        """Every storage volume on every member other than a cached image."""
        out = []
        for m in MEMBERS:
            vols = self.query(f"/1.0/storage-pools/guestlab/volumes?recursion=1&target={m}")
            assert isinstance(vols, list)
            out += [f"{m}:{v['type']}/{v['name']}" for v in vols if v["type"] != "image"]
        return out

    def wait_for(self, member: str, status: str, limit: float = 180) -> float:
        """Seconds until the cluster sees `member` in `status` (Online, Offline)."""
        started = time.monotonic()
        while self.states().get(member) != status:
            assert time.monotonic() - started < limit, f"{member} never became {status}"
            time.sleep(1)
        return time.monotonic() - started

    def member(self, action: str, name: str) -> None:
        """Stop (power cut: forced) or start a member."""
        subprocess.run([str(SCRIPT), action, name], check=True, capture_output=True, timeout=120)


def start(state: Path) -> Cluster:
    started = time.monotonic()
    res = subprocess.run(
        [str(SCRIPT), "up"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "GLC_STATE": str(state)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    env = {}
    for line in res.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    assert set(env) == {
        "GUESTLAB_LXD_ENDPOINT",
        "GUESTLAB_LXD_CERT",
        "GUESTLAB_LXD_KEY",
        "GUESTLAB_LXD_VERIFY",
    }
    return Cluster(env, time.monotonic() - started)


def stop(state: Path) -> None:
    """`down`, with the state `up` made (the cluster's certificate names its host locks)."""
    if os.environ.get("GLC_KEEP") != "1":
        subprocess.run(
            [str(SCRIPT), "down"],
            check=True,
            capture_output=True,
            timeout=600,
            env={**os.environ, "GLC_STATE": str(state)},
        )


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with these variables, for as long as a backend connects."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cluster_backend(cluster: Cluster) -> LxdBackend:
    """An LXD backend of its own, connected to the cluster (the shared one stays local)."""
    backend = LxdBackend()
    with environment(cluster.env):
        avail = backend.availability()
    assert avail.usable and "cluster" in avail.detail, avail
    return backend
