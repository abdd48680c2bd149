"""A lab's resources found and removed: by its meta.json, and by label where the lab's
directory is gone (a crash): the libvirt domains' descriptions, the docker provider's
labels. Several sources see one lab; each name is reported once.
"""

from __future__ import annotations

import contextlib
import json
import shutil

from orchestrator import paths
from orchestrator.backends.contract import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    FoundResources,
    LabRef,
)
from orchestrator.backends.vagrant import command, libvirt
from orchestrator.backends.vagrant.docker_provider import DockerProvider
from orchestrator.backends.vagrant.host import lab_dir
from orchestrator.backends.vagrant.labdir import read_meta
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.backends.vagrant.ssh import Ssh


def destroy(lab: LabRef, preflight: Preflight) -> FoundResources:
    """Remove the lab's machines, disks, network and directory (the backend's `destroy`)."""
    found = FoundResources()
    meta = read_meta(lab)
    provider = meta.get("provider") or preflight.provider()
    if provider == "docker":
        # the engine removes all (and Vagrant's record goes with the lab's directory)
        found = DockerProvider().destroy(lab)
    for machine in meta.get("machines", {}):
        Ssh(lab, machine).forget()
    if provider == "libvirt" and shutil.which("virsh"):
        libvirt.destroy_lab(lab, meta, found)
    elif provider == "virtualbox" and (lab_dir(lab) / "Vagrantfile").exists():
        command.destroy(lab)
        found.machines += [m for m in meta.get("machines", {}) if m not in found.machines]
    root = lab_dir(lab)
    if root.exists():
        shutil.rmtree(root)
        with contextlib.suppress(OSError):
            root.parent.rmdir()  # the lab's directory, if no other backend uses it
    return found


def find(lab: LabRef | None, preflight: Preflight) -> dict[str, FoundResources]:
    """The lab's resources, or every lab's of this store (the backend's `find`)."""
    out: dict[str, FoundResources] = {}
    mine = paths.store_id()
    docker = preflight.provider() == "docker"
    for meta_file in sorted(paths.labs_dir().glob("*/vagrant/meta.json")):
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(meta_file.read_text())
            labels = meta.get("labels", {})
            key = labels.get(LABEL_LAB)
            if not key or (lab is not None and key != lab.key):
                continue
            if lab is None and labels.get(LABEL_STORE) != mine:
                continue
            docker = docker or meta.get("provider") == "docker"
            found = FoundResources(list(meta.get("machines", {})))
            if meta.get("network", {}).get("address"):
                found.other.append(f"network {meta['network']['name']}")
            _merge(out, key, found)
    if docker:
        # containers, networks and commits whose lab directory is gone, by label
        for key, found in DockerProvider().find(lab).items():
            _merge(out, key, found)
    if shutil.which("virsh") and libvirt.virsh_ok("version"):
        # domains whose lab directory is gone (a crash): found by their description
        for dom, labels in libvirt.labelled_domains().items():
            key = labels.get(LABEL_LAB, "")
            if lab is not None and key != lab.key:
                continue
            if lab is None and labels.get(LABEL_STORE) != mine:
                continue
            _merge(out, key, FoundResources([labels.get(LABEL_MACHINE, dom)]))
    return out


def _merge(out: dict[str, FoundResources], key: str, found: FoundResources) -> None:
    """Add what one source found of a lab, each name once (several sources see a lab)."""
    res = out.setdefault(key, FoundResources())
    res.machines += [m for m in found.machines if m not in res.machines]
    res.other += [o for o in found.other if o not in res.other]
