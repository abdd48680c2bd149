"""The lab's directory, `<labs>/<lab key>/vagrant/`: meta.json (the labels and every
machine's settings, the source of truth for `find`), the Vagrantfile rendered from it, the
lab's SSH key pair and the cached `vagrant ssh-config` of each machine.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from orchestrator import paths
from orchestrator.backends.common import file_lock, lock_path
from orchestrator.backends.contract import LabRef
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.docker_provider import DockerProvider
from orchestrator.backends.vagrant.host import lab_dir, network_name, run_host, write_whole
from orchestrator.backends.vagrant.preflight import Engine
from orchestrator.backends.vagrant.vagrantfile import write_vagrantfile


def read_meta(lab: LabRef) -> dict[str, Any]:
    """The lab's meta.json; empty when the lab has none (yet, or any more)."""
    try:
        return json.loads((lab_dir(lab) / "meta.json").read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return {}


class LabFiles:
    """meta.json and the Vagrantfile, changed by one thread and one process at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # between threads; the file lock, between processes

    @contextlib.contextmanager
    def editing(self, lab: LabRef) -> Iterator[dict[str, Any]]:
        """meta.json for changing, then the Vagrantfile rendered again from it."""
        with self._lock, file_lock(lock_path(f"vagrant-{lab.key}")):
            meta = read_meta(lab)
            yield meta
            write_whole(lab_dir(lab) / "meta.json", json.dumps(meta, indent=2) + "\n")
            write_vagrantfile(lab, meta)

    def init_lab(self, lab: LabRef, eng: Engine) -> None:
        """The lab's directory, key pair, network and meta.json, made once."""
        root = paths.ensure(lab_dir(lab))
        key = root / "id_ed25519"
        if not key.exists():
            run_host(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"guestlab {lab.key}",
                      "-f", str(key)])  # fmt: skip
        with self.editing(lab) as meta:
            if meta:
                return
            meta.update(
                labels=lab.labels(),
                provider=eng.provider,
                driver="kvm" if eng.kvm else "qemu",
                kvm_reason=eng.kvm_reason,
                network={"name": network_name(lab), "address": ""},
                machines={},
            )
            if eng.provider == "libvirt":
                meta["network"]["address"] = libvirt.ensure_network(lab)
            elif eng.provider == "docker":
                meta["network"]["address"] = DockerProvider().ensure_network(lab)
