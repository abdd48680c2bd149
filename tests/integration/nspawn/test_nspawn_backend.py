"""The nspawn backend against the real systemd-nspawn of this host.

Every test lab has a random student name and is destroyed by a finalizer. With CI=true an
unusable nspawn fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest

from orchestrator.backends.contract import Backend, LabRef, MachineSpec
from orchestrator.backends.nspawn import NspawnBackend, unit_name
from orchestrator.errors import MachineUnavailable, ProvisioningError
from tests.integration.nspawn.machine import (
    IMAGE,
    _booted,
    _host_uid_of_root,
    _machine_dir,
    _meta,
    _new_lab,
    _procs_mentioning,
    _progress,
    _sh,
    _status,
)

pytestmark = pytest.mark.nspawn


def test_backend_fulfils_the_protocol(backend: NspawnBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "nspawn"
    assert {"systemd", "clone", "snapshot"} <= backend.capabilities
    assert "systemd" in backend.availability().detail


def test_systemd_machine_boots(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    assert _booted(backend, lab, "web") in ("running", "degraded")
    assert _sh(backend, lab, "web", "systemd-detect-virt") == backend.virtualization
    assert _sh(backend, lab, "web", "hostname") == "web-host"
    assert _sh(backend, lab, "web", "cat /proc/1/comm") == "systemd"
    # --private-network: only a loopback interface
    assert _sh(backend, lab, "web", "ls /sys/class/net") == "lo"


def test_limits_apply_to_the_machine(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    meta = _meta(lab, "web")
    if meta["route"] != "keep-unit":
        pytest.skip("limits are systemd-machined's job on a systemd host")
    init = meta["init_pid"]
    cgroups = dict(
        line.split(":", 2)[1:] for line in Path(f"/proc/{init}/cgroup").read_text().splitlines()
    )
    expected = {
        "pids": ("pids.max", str(web.pids)),
        "memory": ("memory.limit_in_bytes", str(web.memory)),
        "cpus": ("cpu.cfs_quota_us", "50000"),
    }
    controller = {"pids": "pids", "memory": "memory", "cpus": "cpu"}
    checked = 0
    for limit, (fname, value) in expected.items():
        if not meta["limits"][limit]:
            continue
        ctrl = controller[limit]
        own = cgroups[next(k for k in cgroups if ctrl in k.split(","))]
        candidates = [p for p in Path("/sys/fs/cgroup").glob(f"*{ctrl}*") if p.is_dir()]
        values = [
            (base / own.lstrip("/") / fname).read_text().strip()
            for base in candidates
            if (base / own.lstrip("/") / fname).exists()
        ]
        assert value in values, (limit, values)
        checked += 1
    if Path("/sys/fs/cgroup/pids").is_dir():
        assert checked == 3, meta["limits"]


def test_machine_without_init(backend: NspawnBackend, lab: LabRef, box: MachineSpec) -> None:
    assert _sh(backend, lab, "box", "cat /proc/2/cmdline | tr '\\0' ' '") == "/bin/sleep infinity"
    assert _sh(backend, lab, "box", "hostname") == "box"
    assert _sh(backend, lab, "box", "systemd-detect-virt || true") == "systemd-nspawn"


def test_exec_reports_exit_code_and_streams(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    result = backend.exec(lab, "box", ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok and not result.timed_out
    env = backend.exec(lab, "box", ["sh", "-c", 'echo "$HOME $(id -u) $PWD"'], timeout=10)
    assert env.stdout == "/root 0 /\n"
    # the machine's own binaries and files, not the host's
    assert "bookworm" in _sh(backend, lab, "box", "cat /etc/os-release")


def test_exec_timeout_kills_the_command(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    started = time.monotonic()
    result = backend.exec(lab, "box", ["sleep", "30"], timeout=2)
    assert time.monotonic() - started < 8
    assert result.timed_out and result.exit_code == 124 and not result.ok
    assert _sh(backend, lab, "box", "pgrep -x sleep -a | grep -c 'sleep 30' || true") == "0"


def test_put_file_writes_content_mode_and_owner(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    backend.put_file(lab, "box", "/etc/guestlab/app.conf", b"key = value\n\xff", 0o640)
    assert _sh(backend, lab, "box", "stat -c '%a %u %g' /etc/guestlab/app.conf") == "640 0 0"
    raw = backend.exec(lab, "box", ["cat", "/etc/guestlab/app.conf"], timeout=10)
    assert raw.stdout == "key = value\n\ufffd"
    backend.put_file(lab, "box", "/etc/guestlab/app.conf", b"again\n", 0o755)
    assert _sh(
        backend, lab, "box", "stat -c %a /etc/guestlab/app.conf; cat /etc/guestlab/app.conf"
    ) == ("755\nagain")


def test_put_file_never_follows_a_link_onto_the_host(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec, tmp_path: Path
) -> None:
    # A student's absolute symlink names a host directory; it must resolve inside the machine.
    _sh(backend, lab, "box", f"ln -s {tmp_path} /root/escape")
    with pytest.raises(ProvisioningError):  # dangling inside the machine: nothing to write to
        backend.put_file(lab, "box", "/root/escape/pwned", b"x\n", 0o644)
    assert not (tmp_path / "pwned").exists()

    _sh(backend, lab, "box", f"mkdir -p {tmp_path}")
    backend.put_file(lab, "box", "/root/escape/pwned", b"x\n", 0o644)
    assert not (tmp_path / "pwned").exists()
    assert _sh(backend, lab, "box", f"cat {tmp_path}/pwned") == "x"


def test_clone_copies_every_file_and_keeps_the_source_running(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    marker = uuid4().hex
    backend.put_file(lab, "web", "/root/marker", marker.encode(), 0o600)
    _sh(backend, lab, "web", f"echo {marker} > /var/lib/written-before-clone")
    target = MachineSpec(lab, "web-clone", IMAGE, hostname="web-clone")
    started = time.monotonic()
    backend.clone(web, target, _progress)
    print(f"clone ready in {time.monotonic() - started:.1f} s")

    machine_id = "cat /etc/machine-id"
    assert _sh(backend, lab, "web-clone", machine_id) == _sh(backend, lab, "web", machine_id)
    assert _sh(backend, lab, "web-clone", "cat /root/marker") == marker
    assert _sh(backend, lab, "web-clone", "cat /var/lib/written-before-clone") == marker
    assert _sh(backend, lab, "web-clone", "hostname") == "web-clone"
    assert _booted(backend, lab, "web-clone") in ("running", "degraded")
    assert _booted(backend, lab, "web") in ("running", "degraded")
    # the two are separate machines: a change in one stays there
    _sh(backend, lab, "web-clone", "rm /root/marker")
    assert _sh(backend, lab, "web", "cat /root/marker") == marker


def test_snapshot_and_restore(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    backend.put_file(lab, "web", "/etc/lab-start", b"original\n", 0o644)
    backend.snapshot(lab, [web])
    assert "snapshot:web" in backend.find(lab)[lab.key].other

    _sh(backend, lab, "web", "rm /etc/lab-start; echo junk > /etc/added-later")
    started = time.monotonic()
    backend.restore(lab, [web], _progress)
    print(f"restore ready in {time.monotonic() - started:.1f} s")

    assert _sh(backend, lab, "web", "cat /etc/lab-start") == "original"
    assert _sh(backend, lab, "web", "test -e /etc/added-later && echo yes || echo no") == "no"
    assert _booted(backend, lab, "web") in ("running", "degraded")
    assert _sh(backend, lab, "web", "hostname") == "web-host"


def test_destroy_leaves_nothing_and_is_idempotent(backend: NspawnBackend) -> None:
    lab = _new_lab()
    try:
        # in threads, as lab.py provisions the machines of a lab
        specs = [MachineSpec(lab, "web", IMAGE), MachineSpec(lab, "box", IMAGE, init="none")]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for fut in [pool.submit(backend.create, spec, _progress) for spec in specs]:
                fut.result()
        units = [unit_name(lab, "web"), unit_name(lab, "box")]
        assert lab.key in backend.find()
        assert sorted(backend.find(lab)[lab.key].machines) == ["box", "web"]
        assert all(_procs_mentioning(u) for u in units)

        # A crash between spawn and saving the PID: destroy must find nspawn by its name.
        meta_file = _machine_dir(lab, "web") / "meta.json"
        meta = json.loads(meta_file.read_text())
        meta["nspawn_pid"] = meta["init_pid"] = None
        meta_file.write_text(json.dumps(meta))

        started = time.monotonic()
        found = backend.destroy(lab)
        print(f"destroy took {time.monotonic() - started:.1f} s")
        assert sorted(found.machines) == ["box", "web"]
        assert not _machine_dir(lab, "web").parent.exists()
        assert not [pid for u in units for pid in _procs_mentioning(u)]
        assert not [u for u in units if Path("/run/systemd/nspawn/propagate", u).exists()]
        assert lab.key not in backend.find()
        assert backend.find(lab) == {}

        assert not backend.destroy(lab)  # harmless the second time
        with pytest.raises(MachineUnavailable):
            backend.exec(lab, "web", ["true"], timeout=5)
    finally:
        backend.destroy(lab)


def test_dead_machine_is_unavailable_and_still_destroyed(backend: NspawnBackend) -> None:
    lab = _new_lab()
    try:
        backend.create(MachineSpec(lab, "box", IMAGE, init="none"), _progress)
        os.kill(_meta(lab, "box")["nspawn_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _procs_mentioning(unit_name(lab, "box")) and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(MachineUnavailable, match="not running"):
            backend.exec(lab, "box", ["true"], timeout=5)
        with pytest.raises(MachineUnavailable):
            backend.shell_argv(lab, "box")
        assert backend.destroy(lab).machines == ["box"]
        assert not _machine_dir(lab, "box").exists()
    finally:
        backend.destroy(lab)


def test_shell_argv_enters_the_machine_confined(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    argv = backend.shell_argv(lab, "box")
    assert argv[-2:] == ["/bin/bash", "-l"]
    out = subprocess.run(
        [*argv, "-c", "hostname; cat /proc/self/uid_map; grep CapBnd /proc/self/status"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    hostname, uid_map, capbnd = out.stdout.strip().splitlines()
    assert hostname == "box"
    assert uid_map.split()[:2] == ["0", str(_host_uid_of_root(backend, lab, "box"))]
    assert capbnd.split()[1] == _status(_meta(lab, "box")["init_pid"])["CapBnd"]
