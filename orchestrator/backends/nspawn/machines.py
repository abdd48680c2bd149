"""Where an nspawn machine lives and what its meta.json says.

    <machines root>/<lab key>/<machine>/meta.json    labels, spec, unit name, PIDs, cgroups

meta.json is the source of truth: it is written before anything runs, so that a crash at
any later point leaves a lab that `find` and `destroy` see.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.backends.contract import FoundResources, LabRef, MachineSpec
from orchestrator.backends.nspawn.store import read_json, write_json
from orchestrator.errors import MachineUnavailable, UsageError
from orchestrator.messages import _

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def unit_name(lab: LabRef, machine: str) -> str:
    """The --machine name: readable, unique per state store, lab and machine, a valid hostname.

    Destroy kills every nspawn process carrying this name, so a lab of the same key in
    another state store (a test session's GUESTLAB_HOME) must get another name.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", f"{lab.key}-{machine}".lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(f"{paths.store_id()}/{lab.key}/{machine}".encode()).hexdigest()[:8]
    return f"gl-{slug}-{digest}"


def lab_dir_in(machines: Path, lab: LabRef) -> Path:
    """The directory of a lab's machines under `machines` (this state store's)."""
    key = lab.key
    if "/" in key or key.startswith(".") or "\0" in key:
        raise UsageError(_("lab key `{key}` cannot name a directory").format(key=key))
    return machines / key


def machine_dir_in(machines: Path, lab: LabRef, machine: str) -> Path:
    """The directory of one machine: meta.json, rootfs, snapshot, nspawn.log."""
    if not NAME_RE.fullmatch(machine):
        raise UsageError(
            _(
                "machine name `{machine}` must be letters, digits, `.`, `_` or `-`"
                " (at most 63, starting with a letter or digit)"
            ).format(machine=machine)
        )
    return lab_dir_in(machines, lab) / machine


def save_meta(mdir: Path, meta: dict[str, Any]) -> None:
    """Write a machine's meta.json (atomically)."""
    write_json(mdir / "meta.json", meta)


def meta_of(mdir: Path) -> dict[str, Any] | None:
    """A machine's meta.json, None when it has none."""
    meta = read_json(mdir / "meta.json")
    if meta is not None:
        meta["dir"] = str(mdir)  # the store may have been moved
    return meta


def existing_meta(mdir: Path, lab: LabRef, machine: str) -> dict[str, Any]:
    """The meta of a machine that must exist, else MachineUnavailable."""
    meta = meta_of(mdir)
    if meta is None:
        raise MachineUnavailable(
            _("machine `{machine}` of lab `{key}` does not exist").format(
                machine=machine, key=lab.key
            )
        )
    return meta


def meta_or_guess(lab: LabRef, mdir: Path) -> dict[str, Any]:
    """The meta of a machine dir, or what destroy needs when it was never written."""
    guess = {"unit": unit_name(lab, mdir.name), "nspawn_pid": None, "cgroups": []}
    return meta_of(mdir) or {**guess, "dir": str(mdir)}


def fresh_meta(spec: MachineSpec, mdir: Path, *, machined: bool, store: str) -> dict[str, Any]:
    """The meta of a machine about to be made: nothing started yet."""
    return {
        "labels": spec.labels,
        "spec": dataclasses.asdict(spec),
        "unit": unit_name(spec.lab, spec.name),
        "dir": str(mdir),
        "route": "machined" if machined else "keep-unit",
        "store": store,
        "nspawn_pid": None,
        "init_pid": None,
        "cgroups": [],
        "exec_cgroups": [],
        "limits": {},
    }


def found_in(ldir: Path) -> FoundResources:
    """The machines (and their snapshots) in a lab directory."""
    found = FoundResources()
    if not ldir.is_dir():
        return found
    for mdir in sorted(ldir.iterdir()):
        if not mdir.is_dir():
            continue
        meta = read_json(mdir / "meta.json") or {}
        name = meta.get("labels", {}).get("guestlab.machine", mdir.name)
        found.machines.append(name)
        if (mdir / "snapshot").is_dir():
            found.other.append(f"snapshot:{name}")
    return found


def lab_label(ldir: Path) -> str:
    """The lab key the machines of a lab directory are labelled with."""
    for meta_file in sorted(ldir.glob("*/meta.json")):
        key = (read_json(meta_file) or {}).get("labels", {}).get("guestlab.lab")
        if key:
            return str(key)
    return ldir.name
