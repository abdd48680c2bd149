"""Host-side pieces of the Vagrant backend: names, where things live, host commands.

Nothing here knows a provider's engine (libvirt is in libvirt.py, docker in
docker_provider.py) or the Vagrantfile (vagrantfile.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.contract import LabRef
from orchestrator.errors import BackendUnavailable, ProvisioningError
from orchestrator.messages import N_, _

PROVIDERS = ("libvirt", "virtualbox", "docker")
#: a libvirt domain's description (and a docker label's value) starts with it, then JSON
DESCRIPTION_PREFIX = "guestlab "
INSTALL_FIX = N_(
    "apt-get install -y vagrant vagrant-libvirt libvirt-daemon-system "
    "libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils extlinux "
    "syslinux-common (or run scripts/setup/vagrant.sh)"
)


# -- names ------------------------------------------------------------------------------
def key_digest(key: str) -> str:
    """Eight hex digits of a lab key: short names that still tell labs apart."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def lab_digest(lab: LabRef) -> str:
    return key_digest(lab.key)


def domain_prefix(lab: LabRef) -> str:
    """Prefix of the lab's libvirt domains and volumes (vagrant-libvirt's default_prefix)."""
    return f"gl-{lab_digest(lab)}-"


def domain_name(lab: LabRef, machine: str) -> str:
    """The domain (or container) Vagrant creates: the prefix plus the machine name."""
    return domain_prefix(lab) + re.sub(r"[^-a-z0-9_.]", "", machine, flags=re.IGNORECASE)


def network_name(lab: LabRef) -> str:
    return f"gl-{lab_digest(lab)}"


def lab_dir(lab: LabRef) -> Path:
    return paths.labs_dir() / lab.key / "vagrant"


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def box_dir(image: str, provider: str) -> Path | None:
    """The directory Vagrant unpacked the guestlab box into, if it has it."""
    from orchestrator.images.box import box_name

    root = vagrant_home() / "boxes" / box_name(image).replace("/", "-VAGRANTSLASH-")
    found = sorted(root.glob(f"*/{provider}/metadata.json")) if root.is_dir() else []
    return found[-1].parent if found else None


def box_volume_name(image: str, box_img: Path) -> str:
    """The volume name vagrant-libvirt 0.11 looks for (an unversioned box: 0_<mtime>)."""
    from orchestrator.images.box import box_name

    version = box_img.parent.parent.name
    if version in ("", "0"):
        version = f"0_{int(box_img.stat().st_mtime)}"
    base = box_name(image).replace("/", "-VAGRANTSLASH-")
    return f"{base}_vagrant_box_image_{version}_box.img"


# -- host commands ------------------------------------------------------------------------
def run_host(argv: Sequence[str], *, timeout: float = 120, input: bytes | None = None) -> str:
    """Run a host command; a non-zero exit raises ProvisioningError with its stderr."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise BackendUnavailable(
            _("`{argv}` is not installed").format(argv=argv[0]), hint=_(INSTALL_FIX)
        ) from None
    except subprocess.TimeoutExpired:
        raise ProvisioningError(
            _("`{command}` took more than {timeout} s").format(
                command=" ".join(argv[:3]), timeout=format(timeout, "g")
            )
        ) from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
        raise ProvisioningError(
            _("`{command}` failed: {error}").format(command=" ".join(argv[:4]), error=err[-600:])
        )
    return proc.stdout.decode("utf-8", "replace")


def write_whole(path: Path, text: str) -> None:
    """Write a file whole, so that a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
