"""Pools on the real LXD, through the CLI: a claim of machine-id-clone hands over the
student's lab as a cold `up` makes it. The clone is a copy of the template as the
student's step left it (both carry the student's own template ID), booted (systemd
settled) and named, each machine unprivileged with an id map of its own; the first check
fails; `down` and a drained pool leave no instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrator.backends.contract import LABEL_LAB, LABEL_MACHINE
from orchestrator.backends.lxd.config import CONFIG_PREFIX, is_isolated
from tests.integration.conftest import engine, guestlab, student_id
from tests.integration.pool_helpers import drain, ok, wait_filled

pytestmark = pytest.mark.lxd

SID = "machine-id-clone"


def instances(key: str) -> dict[str, dict[str, str]]:
    """The config of each LXD instance of lab `key`, by machine name."""
    client = engine("lxd").client()  # type: ignore[attr-defined]
    found = {}
    for inst in client.instances.all(recursion=1):
        config = inst.config or {}
        if config.get(CONFIG_PREFIX + LABEL_LAB) == key:
            found[config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name)] = config
    return found


@pytest.fixture
def claimed() -> Iterator[tuple[str, dict[str, object]]]:
    """A student's lab claimed from a pool of one (the pool drained and the lab removed after)."""
    engine("lxd")
    student = student_id()
    ok("pool", "fill", SID, "--size", "1", "--backend", "lxd")
    try:
        wait_filled(SID, 1, limit=300, backend="lxd")
        out = ok("up", SID, "--student", student, "--backend", "lxd")
        assert "from the pool" in out, out
        (record,) = json.loads(ok("status", SID, "--student", student, "--format", "json"))
        yield student, record
    finally:
        drain(SID, limit=300)  # again while a refill started by the claim finishes its lab
        ok("down", SID, "--student", student)


def test_a_claimed_lab_has_a_booted_clone_of_the_students_template_and_goes_away(
    claimed: tuple[str, dict[str, object]],
) -> None:
    student, record = claimed
    params = record["params"]
    assert isinstance(params, dict)
    expected = params["template_id"]

    def run(machine: str, *argv: str) -> str:
        return ok("exec", SID, machine, "--student", student, "--", *argv).strip()

    for machine in ("template", "clone"):
        ids = run(machine, "cat", "/etc/machine-id", "/var/lib/dbus/machine-id").split()
        assert ids == [expected, expected], (machine, ids)
        assert run(machine, "hostname") == machine
        # handed over booted, as a cold `up` hands it over
        assert run(machine, "systemctl", "is-system-running") in ("running", "degraded")
    configs = instances(str(record["key"]))
    assert set(configs) >= {"template", "clone"}, sorted(configs)
    assert all(is_isolated(c) for c in configs.values())
    bases = {c["volatile.idmap.base"] for c in configs.values()}
    assert len(bases) == len(configs)  # root of each machine is a host uid range of its own
    res = guestlab("check", SID, "--student", student)
    assert res.returncode == 1, res.stdout + res.stderr  # the student has work to do
    ok("down", SID, "--student", student)
    assert instances(str(record["key"])) == {}
