"""Which provider this host offers, asked once per process: libvirt (KVM when it really
works here, QEMU software emulation when not), then VirtualBox, then Vagrant's docker
provider (containers, flagged as NOT a real VM). GUESTLAB_VAGRANT_PROVIDER forces one.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import threading
from dataclasses import dataclass

from orchestrator.backends.common import raise_unless_usable
from orchestrator.backends.contract import Availability
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.host import INSTALL_FIX, PROVIDERS, run_host, vagrant_home
from orchestrator.backends.vagrant.libvirt import POOL, virsh
from orchestrator.errors import BackendUnavailable, ProvisioningError
from orchestrator.messages import N_, _

VIRTUALBOX_FIX = N_(
    "VirtualBox is not packaged in Debian 12: install it from its vendor's packages for "
    "your release, then load its driver (/sbin/vboxconfig)"
)


@dataclass(frozen=True)
class Engine:
    """The provider the preflight settled on, and whether libvirt runs it under KVM."""

    provider: str
    kvm: bool
    kvm_reason: str


class Preflight:
    """The host's answer for Vagrant, kept for the process once it is usable."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._version: str | None = None
        self._usable: Availability | None = None
        self._lock = threading.Lock()  # one preflight between threads

    def provider(self) -> str:
        """The provider availability settled on; a guess only where none is usable.

        Asked before the preflight (capabilities, machine facts): a guess could promise a
        VM on a host where the docker provider is the one that will run.
        """
        if self._engine is None:
            self.availability()
        if self._engine is not None:
            return self._engine.provider
        forced = os.environ.get("GUESTLAB_VAGRANT_PROVIDER", "")
        return forced if forced in PROVIDERS else "libvirt"

    def engine(self) -> Engine:
        """The usable provider, or BackendUnavailable with the fix."""
        with self._lock:
            if self._engine is None:
                raise_unless_usable("vagrant", self._availability())
            assert self._engine is not None
            return self._engine

    def availability(self) -> Availability:
        """Whether Vagrant can make machines here, and with which provider; never raises."""
        # a usable answer is kept for the process: asking costs seconds of virsh calls
        # (3.7 s here, measured), and a `reset` asked twice before this
        if self._usable is not None:
            return self._usable
        try:
            state = self._availability()
        except Exception as exc:  # availability never raises: say what went wrong instead
            return Availability(
                False, _("cannot check Vagrant: {error}").format(error=exc), _(INSTALL_FIX)
            )
        if state.usable:
            self._usable = state
        return state

    def _availability(self) -> Availability:
        if shutil.which("vagrant") is None:
            return Availability(False, _("vagrant is not installed"), _(INSTALL_FIX))
        try:
            import vagrant  # noqa: F401  (lazy: the CLI must start without python-vagrant)
        except ImportError:
            return Availability(
                False, _("python-vagrant is not installed"), "pip install 'guestlab[vagrant]'"
            )
        forced = os.environ.get("GUESTLAB_VAGRANT_PROVIDER")
        if forced and forced not in PROVIDERS:
            return Availability(
                False,
                _("GUESTLAB_VAGRANT_PROVIDER={forced} is not a provider guestlab knows").format(
                    forced=forced
                ),
                _("use one of: {providers}").format(providers=", ".join(PROVIDERS)),
            )
        checks = {
            "libvirt": self._check_libvirt,
            "virtualbox": self._check_virtualbox,
            "docker": self._check_docker,
        }
        problems: list[tuple[str, str]] = []
        for provider in (forced,) if forced else PROVIDERS:
            state = checks[provider]()
            if state.usable:
                return state
            problems.append((state.detail, state.fix))
        # the first provider's problem is the one worth fixing on Linux (libvirt)
        return Availability(False, problems[0][0], problems[0][1])

    def _check_libvirt(self) -> Availability:
        if shutil.which("virsh") is None:
            return Availability(
                False, _("libvirt's client (virsh) is not installed"), _(INSTALL_FIX)
            )
        if not _has_libvirt_plugin():
            return Availability(False, _("the vagrant-libvirt plugin is missing"), _(INSTALL_FIX))
        # generous: a libvirtd busy with VMs under emulation can take long to answer, and a
        # libvirt taken for absent would put this host on the docker provider
        try:
            version = virsh("version", "--daemon", timeout=90)
        except (ProvisioningError, BackendUnavailable) as exc:
            return Availability(
                False,
                _("libvirtd does not answer ({error})").format(error=exc),
                _(libvirt.LIBVIRTD_FIX),
            )
        try:
            state = virsh("pool-info", POOL, timeout=90)
        except ProvisioningError:
            return Availability(
                False,
                _("libvirt has no storage pool `{pool}`").format(pool=POOL),
                _(libvirt.POOL_FIX).format(pool=POOL),
            )
        if not re.search(r"^State:\s+running", state, re.M):
            return Availability(
                False,
                _("libvirt's storage pool `{pool}` is not running").format(pool=POOL),
                _(libvirt.POOL_FIX).format(pool=POOL),
            )
        usable, reason = libvirt.kvm_status()
        self._engine = Engine("libvirt", usable, reason)
        found = re.search(r"Running hypervisor:\s*(.+)", version)
        hyper = f", {found.group(1).strip()}" if found else ""
        vagrant = self._vagrant_version()
        if usable:
            detail = _("{vagrant}, libvirt with KVM{hypervisor}").format(
                vagrant=vagrant, hypervisor=hyper
            )
        else:
            detail = _(
                "{vagrant}, libvirt with QEMU software emulation (KVM unusable:"
                " {reason}){hypervisor}"
            ).format(vagrant=vagrant, reason=reason, hypervisor=hyper)
        if libvirt.kvm_node_hidden():
            detail += "; " + _(
                "slow: /dev/kvm is not open to the kvm group, so libvirt probes QEMU again at"
                " every call (fix: chgrp kvm /dev/kvm && chmod 660 /dev/kvm, as udev would)"
            )
        return Availability(True, detail)

    def _check_virtualbox(self) -> Availability:
        exe = shutil.which("VBoxManage")
        if exe is None:
            return Availability(False, _("VirtualBox is not installed"), _(VIRTUALBOX_FIX))
        # the command alone is not enough: without its kernel driver no VM starts
        if not os.path.exists("/dev/vboxdrv"):
            return Availability(
                False,
                _("VirtualBox's kernel driver is not loaded (no /dev/vboxdrv)"),
                _("load it: /sbin/vboxconfig (it needs this kernel's headers)"),
            )
        version = run_host([exe, "--version"], timeout=30).strip().splitlines()[-1]
        self._engine = Engine("virtualbox", False, "")
        return Availability(
            True,
            _("{vagrant}, VirtualBox {version}").format(
                vagrant=self._vagrant_version(), version=version
            ),
        )

    def _check_docker(self) -> Availability:
        from orchestrator.backends import get

        if shutil.which("docker") is None:
            # Vagrant's docker provider drives the engine through its command, not its API
            return Availability(
                False, _("the docker command is not installed"), "apt-get install -y docker.io"
            )
        state = get("docker").availability()
        if not state.usable:
            return Availability(
                False, _("no provider: {detail}").format(detail=state.detail), state.fix
            )
        self._engine = Engine("docker", False, "")
        why = (
            "GUESTLAB_VAGRANT_PROVIDER=docker"
            if os.environ.get("GUESTLAB_VAGRANT_PROVIDER") == "docker"
            else "neither libvirt nor VirtualBox is usable here"
        )
        return Availability(
            True,
            _("{vagrant}, docker provider (NOT a real VM: containers; {why})").format(
                vagrant=self._vagrant_version(), why=why
            ),
        )

    def _vagrant_version(self) -> str:
        if self._version is None:
            self._version = run_host(["vagrant", "--version"], timeout=60).strip()
        return self._version


def _has_libvirt_plugin() -> bool:
    """Looked up on disk first: `vagrant plugin list` costs seconds of Ruby start-up."""
    patterns = [
        "/usr/share/rubygems-integration/all/gems/vagrant-libvirt-*",
        str(vagrant_home() / "gems" / "*" / "gems" / "vagrant-libvirt-*"),
    ]
    if any(glob.glob(p) for p in patterns):
        return True
    return "vagrant-libvirt" in run_host(["vagrant", "plugin", "list"], timeout=60)
