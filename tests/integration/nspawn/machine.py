"""Helpers of the nspawn backend's test modules (their fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from uuid import uuid4

from orchestrator.backends.contract import LabRef
from orchestrator.backends.nspawn import NspawnBackend

IMAGE = "debian-12-systemd"
SCENARIO = "nspawn-test"


def _progress(line: str) -> None:
    print(f"[nspawn] {line}")


def _new_lab() -> LabRef:
    return LabRef(SCENARIO, f"t{uuid4().hex[:8]}")


def _machine_dir(lab: LabRef, machine: str) -> Path:
    return NspawnBackend().machine_dir(lab, machine)


def _meta(lab: LabRef, machine: str) -> dict:
    return json.loads((_machine_dir(lab, machine) / "meta.json").read_text())


def _procs_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (what `ps` would find)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _sh(backend: NspawnBackend, lab: LabRef, machine: str, script: str) -> str:
    result = backend.exec(lab, machine, ["sh", "-c", script], timeout=30)
    assert result.ok, result
    return result.stdout.strip()


def _status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status, read on the host."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _host_uid_of_root(backend: NspawnBackend, lab: LabRef, machine: str) -> int:
    """The host uid that root of the machine is (its init's uid seen from the host)."""
    return int(_status(_meta(lab, machine)["init_pid"])["Uid"].split()[0])


def _booted(backend: NspawnBackend, lab: LabRef, machine: str) -> str:
    return backend.exec(lab, machine, ["systemctl", "is-system-running"], timeout=30).stdout.strip()
