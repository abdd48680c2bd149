"""The pool commands as the pool tests drive them, through the CLI: each command must
succeed, a pool is waited for until its background refill is over, and drained until no
pool lab is left (a refill under way finishes the labs it started)."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.pool.records import PoolStore
from orchestrator.state import Store
from tests.integration.conftest import guestlab


def ok(*args: str) -> str:
    res = guestlab(*args, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def pool_row(sid: str, backend: str | None = None) -> dict[str, int]:
    """`pool status`'s row of the scenario (on `backend`; the first row without one)."""
    rows = json.loads(ok("pool", "status", sid, "--format", "json"))
    return next((r for r in rows if backend is None or r["backend"] == backend), {})


def wait_filled(sid: str, ready: int, limit: float = 180, backend: str | None = None) -> None:
    """Until the background refill has made the pool whole again."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        row = pool_row(sid, backend)
        if row.get("ready") == ready and row.get("filling") == 0:
            return
        time.sleep(1)
    pytest.fail(f"the pool of {sid} never got back to {ready} ready: {pool_row(sid, backend)}")


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
