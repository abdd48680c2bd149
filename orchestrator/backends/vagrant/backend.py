"""Vagrant backend: machines are real virtual machines, driven through python-vagrant.

One lab is one directory, `<labs>/<lab key>/vagrant/`, holding a Vagrantfile rendered from
`templates/Vagrantfile.j2` (for students who want to see how it was made), `meta.json`
(the labels and every machine's settings: the source of truth for `find`), the lab's SSH
key pair and the cached `vagrant ssh-config` of each machine.

Providers, in order of preference: libvirt (KVM when it really works here, QEMU software
emulation when not; the preflight decides once and caches the answer; vagrant_libvirt.py),
VirtualBox, and docker (vagrant_docker.py), which is flagged as not a real VM. With
libvirt every lab gets an isolated network of its own (no forwarding), and every domain
carries the labels in its description, so a lab whose directory was lost is still found
and removed. Commands run over plain ssh (vagrant_ssh.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import paths
from orchestrator.backends.contract import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.host import (
    DESCRIPTION_PREFIX,
    INSTALL_FIX,
    PROVIDERS,
    box_dir,
    domain_name,
    domain_prefix,
    lab_dir,
    network_name,
    render_vagrantfile,
    run_host,
    vagrant_home,
)
from orchestrator.backends.vagrant.libvirt import POOL, virsh
from orchestrator.backends.vagrant.ssh import Ssh
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
    UsageError,
)

if TYPE_CHECKING:
    from orchestrator.backends.vagrant.docker_provider import DockerProvider

READY_TIMEOUT = 300.0  # a cold boot under software emulation takes about a minute
_NOISE = re.compile(r" -- |version|metadata|https?://")
VIRTUALBOX_FIX = (
    "VirtualBox is not packaged in Debian 12: install it from its vendor's packages for "
    "your release, then load its driver (/sbin/vboxconfig)"
)


@dataclass(frozen=True)
class _Engine:
    provider: str
    kvm: bool
    kvm_reason: str


class VagrantBackend:
    """Machines as Vagrant machines: real VMs with libvirt or VirtualBox, or containers
    (flagged as such) with Vagrant's docker provider."""

    name = "vagrant"

    def __init__(self) -> None:
        self._engine: _Engine | None = None
        self._version: str | None = None
        self._usable: Availability | None = None
        self._lock = threading.Lock()  # meta.json and the Vagrantfile, between threads

    # -- what this host offers -----------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        if self._provider() == "docker":
            # containers: clones and the starting state as commits, but no VM
            return frozenset({"systemd", "clone", "snapshot"})
        return frozenset({"systemd", "clone", "snapshot", "vm"})

    @property
    def virtualization(self) -> str:
        """What systemd-detect-virt prints inside: kvm, qemu, oracle or docker."""
        provider = self._provider()
        if provider == "docker":
            return "docker"
        if provider == "virtualbox":
            return "oracle"
        return "kvm" if libvirt.kvm_status()[0] else "qemu"

    def _provider(self) -> str:
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

    def availability(self) -> Availability:
        # a usable answer is kept for the process: asking costs seconds of virsh calls
        # (3.7 s here, measured), and a `reset` asked twice before this
        if self._usable is not None:
            return self._usable
        try:
            state = self._availability()
        except Exception as exc:  # availability never raises: say what went wrong instead
            return Availability(False, f"cannot check Vagrant: {exc}", INSTALL_FIX)
        if state.usable:
            self._usable = state
        return state

    def _availability(self) -> Availability:
        if shutil.which("vagrant") is None:
            return Availability(False, "vagrant is not installed", INSTALL_FIX)
        try:
            import vagrant  # noqa: F401  (lazy: the CLI must start without python-vagrant)
        except ImportError:
            return Availability(
                False, "python-vagrant is not installed", "pip install 'guestlab[vagrant]'"
            )
        forced = os.environ.get("GUESTLAB_VAGRANT_PROVIDER")
        if forced and forced not in PROVIDERS:
            return Availability(
                False,
                f"GUESTLAB_VAGRANT_PROVIDER={forced} is not a provider guestlab knows",
                f"use one of: {', '.join(PROVIDERS)}",
            )
        problems: list[tuple[str, str]] = []
        for provider in (forced,) if forced else PROVIDERS:
            state = getattr(self, f"_check_{provider}")()
            if state.usable:
                return state
            problems.append((state.detail, state.fix))
        # the first provider's problem is the one worth fixing on Linux (libvirt)
        return Availability(False, problems[0][0], problems[0][1])

    def _has_libvirt_plugin(self) -> bool:
        """Looked up on disk first: `vagrant plugin list` costs seconds of Ruby start-up."""
        patterns = [
            "/usr/share/rubygems-integration/all/gems/vagrant-libvirt-*",
            str(vagrant_home() / "gems" / "*" / "gems" / "vagrant-libvirt-*"),
        ]
        if any(glob.glob(p) for p in patterns):
            return True
        return "vagrant-libvirt" in run_host(["vagrant", "plugin", "list"], timeout=60)

    def _check_libvirt(self) -> Availability:
        if shutil.which("virsh") is None:
            return Availability(False, "libvirt's client (virsh) is not installed", INSTALL_FIX)
        if not self._has_libvirt_plugin():
            return Availability(False, "the vagrant-libvirt plugin is missing", INSTALL_FIX)
        # generous: a libvirtd busy with VMs under emulation can take long to answer, and a
        # libvirt taken for absent would put this host on the docker provider
        try:
            version = virsh("version", "--daemon", timeout=90)
        except (ProvisioningError, BackendUnavailable) as exc:
            return Availability(False, f"libvirtd does not answer ({exc})", libvirt.LIBVIRTD_FIX)
        try:
            state = virsh("pool-info", POOL, timeout=90)
        except ProvisioningError:
            return Availability(False, f"libvirt has no storage pool `{POOL}`", libvirt.POOL_FIX)
        if not re.search(r"^State:\s+running", state, re.M):
            return Availability(
                False, f"libvirt's storage pool `{POOL}` is not running", libvirt.POOL_FIX
            )
        usable, reason = libvirt.kvm_status()
        self._engine = _Engine("libvirt", usable, reason)
        found = re.search(r"Running hypervisor:\s*(.+)", version)
        hyper = f", {found.group(1).strip()}" if found else ""
        how = "with KVM" if usable else f"with QEMU software emulation (KVM unusable: {reason})"
        detail = f"{self._vagrant_version()}, libvirt {how}{hyper}"
        if libvirt.kvm_node_hidden():
            detail += (
                "; slow: /dev/kvm is not open to the kvm group, so libvirt probes QEMU again at "
                "every call "
                "(fix: chgrp kvm /dev/kvm && chmod 660 /dev/kvm, as udev would)"
            )
        return Availability(True, detail)

    def _check_virtualbox(self) -> Availability:
        exe = shutil.which("VBoxManage")
        if exe is None:
            return Availability(False, "VirtualBox is not installed", VIRTUALBOX_FIX)
        # the command alone is not enough: without its kernel driver no VM starts
        if not os.path.exists("/dev/vboxdrv"):
            return Availability(
                False,
                "VirtualBox's kernel driver is not loaded (no /dev/vboxdrv)",
                "load it: /sbin/vboxconfig (it needs this kernel's headers)",
            )
        version = run_host([exe, "--version"], timeout=30).strip().splitlines()[-1]
        self._engine = _Engine("virtualbox", False, "")
        return Availability(True, f"{self._vagrant_version()}, VirtualBox {version}")

    def _check_docker(self) -> Availability:
        from orchestrator.backends import get

        if shutil.which("docker") is None:
            # Vagrant's docker provider drives the engine through its command, not its API
            return Availability(
                False, "the docker command is not installed", "apt-get install -y docker.io"
            )
        state = get("docker").availability()
        if not state.usable:
            return Availability(False, f"no provider: {state.detail}", state.fix)
        self._engine = _Engine("docker", False, "")
        why = (
            "GUESTLAB_VAGRANT_PROVIDER=docker"
            if os.environ.get("GUESTLAB_VAGRANT_PROVIDER") == "docker"
            else "neither libvirt nor VirtualBox is usable here"
        )
        return Availability(
            True, f"{self._vagrant_version()}, docker provider (NOT a real VM: containers; {why})"
        )

    def _vagrant_version(self) -> str:
        if self._version is None:
            self._version = run_host(["vagrant", "--version"], timeout=60).strip()
        return self._version

    def _eng(self) -> _Engine:
        with self._lock:
            if self._engine is None:
                state = self._availability()
                if not state.usable:
                    raise BackendUnavailable(f"vagrant: {state.detail}", hint=state.fix)
            assert self._engine is not None
            return self._engine

    def _docker(self) -> DockerProvider:
        from orchestrator.backends.vagrant.docker_provider import DockerProvider

        return DockerProvider()

    # -- the lab directory -------------------------------------------------------------
    def _meta(self, lab: LabRef) -> dict[str, Any]:
        try:
            return json.loads((lab_dir(lab) / "meta.json").read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    @contextlib.contextmanager
    def _editing(self, lab: LabRef) -> Iterator[dict[str, Any]]:
        """meta.json for changing, then the Vagrantfile rendered again from it."""
        with self._lock, open(paths.locks_dir() / f"vagrant-{lab.key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self._meta(lab)
            yield meta
            _replace(lab_dir(lab) / "meta.json", json.dumps(meta, indent=2) + "\n")
            self._write_vagrantfile(lab, meta)

    def _init_lab(self, lab: LabRef) -> None:
        """The lab's directory, key pair, network and meta.json, made once."""
        eng = self._eng()
        root = paths.ensure(lab_dir(lab))
        key = root / "id_ed25519"
        if not key.exists():
            run_host(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"guestlab {lab.key}",
                      "-f", str(key)])  # fmt: skip
        with self._editing(lab) as meta:
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
                meta["network"]["address"] = self._docker().ensure_network(lab)

    def _write_vagrantfile(self, lab: LabRef, meta: dict[str, Any]) -> None:
        from orchestrator.images.box import insecure_public_key

        if not meta:
            return
        root = lab_dir(lab)
        machines = [
            {"name": name, **m, "prefix": domain_prefix(lab)}
            for name, m in meta["machines"].items()
        ]
        text = render_vagrantfile(
            {
                "lab": lab,
                "provider": meta["provider"],
                "driver": meta["driver"],
                "kvm_reason": meta["kvm_reason"],
                "pool": POOL,
                "network": meta["network"],
                "key": str(root / "id_ed25519"),
                "insecure_key": str(insecure_public_key())[: -len(".pub")],
                "machines": machines,
            }
        )
        _replace(root / "Vagrantfile", text)

    # -- python-vagrant ----------------------------------------------------------------
    def _vagrant(self, lab: LabRef) -> Any:
        import vagrant

        log = lab_dir(lab) / "vagrant.log"
        env = {
            **os.environ,
            "VAGRANT_CHECKPOINT_DISABLE": "1",  # Vagrant would otherwise call home each run
            "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
            "LIBVIRT_DEFAULT_URI": libvirt.URI,
        }
        return vagrant.Vagrant(
            root=str(lab_dir(lab)),
            env=env,
            out_cm=vagrant.make_file_cm(str(log)),
            err_cm=vagrant.make_file_cm(str(log)),
        )

    def _failed(self, lab: LabRef, what: str, lines: Sequence[str]) -> ProvisioningError:
        """python-vagrant says only that a command failed: add what Vagrant printed."""
        log = lab_dir(lab) / "vagrant.log"
        tail = [ln.rstrip() for ln in lines[-4:]]
        with contextlib.suppress(OSError):
            # Vagrant's message, without the Ruby backtrace that follows it
            said = log.read_text(errors="replace").splitlines()[-60:]
            tail += [ln for ln in said if ln.strip() and not ln.lstrip().startswith("from ")][-8:]
        detail = "\n".join(t for t in tail if t.strip())
        # kept apart: `down` (or a test's clean-up) removes the lab's directory with its log
        kept = paths.ensure(paths.home() / "logs") / f"vagrant-{lab.key}.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(log, kept)
            with open(kept, "a") as f:
                f.write("\n--- vagrant's stdout ---\n" + "".join(lines))
        return ProvisioningError(
            f"`vagrant {what}` failed in {lab_dir(lab)}" + (f":\n{detail}" if detail else ""),
            hint=f"see {kept}",
        )

    def _up(self, lab: LabRef, machine: str, progress: Progress) -> None:
        provider = self._eng().provider
        for attempt in (1, 2):
            lines: list[str] = []
            try:
                for line in self._vagrant(lab).up(
                    vm_name=machine, provider=provider, stream_output=True
                ):
                    lines.append(line)
                    text = line.strip()
                    # Vagrant's steps, not its settings table or its box-version advice
                    if text.startswith("==>") and not _NOISE.search(text):
                        progress(text.lstrip("=> ").strip())
                return
            except subprocess.CalledProcessError:
                error = self._failed(lab, f"up {machine} --provider {provider}", lines)
            # vagrant-libvirt removes a domain that failed to start; seen once in a dozen
            # boots here, so a second attempt is worth its minute before giving up
            if (
                attempt == 2
                or provider != "libvirt"
                or libvirt.domain_exists(domain_name(lab, machine))
            ):
                raise error
            progress(f"`vagrant up {machine}` failed ({str(error).splitlines()[-1]}); again")

    # -- images --------------------------------------------------------------------------
    def has_image(self, image: str) -> bool:
        provider = self._provider()
        if provider == "docker":
            from orchestrator.backends.vagrant.docker_provider import docker_backend

            return docker_backend().has_image(image)
        return box_dir(image, provider) is not None

    def ensure_image(
        self, image: str, progress: Progress, *, build: bool = True, mirror: str | None = None
    ) -> None:
        from orchestrator.images.box import box_name, box_path, ensure_box_file
        from orchestrator.images.catalog import lookup

        lookup(image)
        eng = self._eng()
        if eng.provider == "docker":
            # no box: the docker provider runs the image the docker backend builds
            from orchestrator.backends.vagrant.docker_provider import docker_backend

            docker_backend().ensure_image(image, progress, build=build, mirror=mirror)
            return
        if eng.provider == "virtualbox":
            if box_dir(image, "virtualbox") is None:
                raise UsageError(
                    f"no VirtualBox box {box_name(image)}: guestlab builds libvirt boxes only",
                    hint=f"add one: vagrant box add {box_name(image)} FILE --provider virtualbox",
                )
            return
        with open(paths.locks_dir() / f"vagrant-box-{image}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if box_dir(image, "libvirt") is None:
                if not box_path(image).exists() and not build:
                    raise UsageError(
                        f"the Vagrant box {box_name(image)} does not exist yet: build it with "
                        f"`guestlab image build {image} --backend vagrant`",
                        hint=f"guestlab image build {image} --backend vagrant",
                    )
                self._add_box(image, ensure_box_file(image, mirror=mirror, progress=progress))
            libvirt.upload_box(image, progress)

    def import_image(self, image: str, tarball: Path, progress: Progress) -> None:
        """`image build --rebuild`: build the box again from the fresh rootfs and add it."""
        from orchestrator.images.box import ensure_box_file

        self._add_box(image, ensure_box_file(image, progress=progress, rebuild=True))
        libvirt.upload_box(image, progress)

    def _add_box(self, image: str, box_file: Path) -> None:
        from orchestrator.images.box import box_name

        run_host(
            ["vagrant", "box", "add", "--force", "--name", box_name(image),
             "--provider", "libvirt", str(box_file)],
            timeout=600,
        )  # fmt: skip

    # -- machines ------------------------------------------------------------------------
    def _machine_entry(
        self, spec: MachineSpec, meta: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        """A machine's settings in the lab's `meta`, which the Vagrantfile is rendered from."""
        from orchestrator.images.box import box_name

        entry: dict[str, Any] = {
            "domain": domain_name(spec.lab, spec.name),
            "box": box_name(spec.image),
            "image": spec.image,
            "init": spec.init,
            "hostname": spec.hostname or spec.name,
            "memory": max(256, spec.memory // 1024**2),  # MiB; a kernel needs some room
            "cpus": max(1, math.ceil(spec.cpus)),
            "description": DESCRIPTION_PREFIX + json.dumps(spec.labels, sort_keys=True),
            "labels": spec.labels,
            "disk": None,
            "clone_of": None,
        }
        if meta["provider"] == "docker":
            from orchestrator.backends.docker import image_ref
            from orchestrator.backends.vagrant.docker_provider import (
                command,
                container_name,
                run_args,
            )

            network = meta["network"]["name"]
            entry.update(
                domain=container_name(spec.lab, spec.name),
                docker_image=image_ref(spec.image),
                docker_cmd=command(spec, network),
                docker_args=run_args(spec, network),
            )
        entry.update(extra)
        return entry

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        lab = spec.lab
        if libvirt.domain_exists(domain_name(lab, spec.name)):
            raise ProvisioningError(
                f"machine `{spec.name}` of lab `{lab.key}` already exists",
                hint="remove the lab first: guestlab down",
            )
        self.ensure_image(spec.image, progress, build=False)
        self._init_lab(lab)
        with self._editing(lab) as meta:
            meta["machines"][spec.name] = self._machine_entry(spec, meta)
        if self._eng().provider == "docker":
            progress(f"vagrant up {spec.name} (a container: Vagrant's docker provider)")
        else:
            progress(f"vagrant up {spec.name} (a real VM: a minute or so under emulation)")
        self._up(lab, spec.name, progress)
        self._after_boot(lab, spec.name, spec.hostname or spec.name, spec.init, progress)

    def _after_boot(
        self, lab: LabRef, machine: str, hostname: str | None, init: str, progress: Progress
    ) -> None:
        """SSH as the lab's key only, the hostname when Vagrant did not set it, and ready."""
        if self._meta(lab)["provider"] == "docker":
            # Vagrant gave the container its hostname; there is no SSH to set up
            # systemd starts only now: the docker backend's wait knows "offline" is early
            self._docker().release_boot(lab, machine, init)
            self._docker().engine.wait_ready(lab, machine, init, progress)
            return
        Ssh(lab, machine).forget()
        self._wait_ssh(lab, machine)
        pub = (lab_dir(lab) / "id_ed25519.pub").read_text()
        res = self._ssh(lab, machine).run(
            ["sh", "-c", 'printf "%s" "$1" > ~vagrant/.ssh/authorized_keys', "sh", pub],
            timeout=60,
        )
        if not res.ok:
            raise ProvisioningError(f"cannot install the lab's key in {machine}: {res.stderr}")
        if hostname:
            script = (
                'echo "$1" > /etc/hostname && hostname "$1" && '
                'sed -i "/^127.0.1.1/d" /etc/hosts && printf "127.0.1.1\\t%s\\n" "$1" >> /etc/hosts'
            )
            res = self._ssh(lab, machine).run(["sh", "-c", script, "sh", hostname], timeout=60)
            if not res.ok:
                raise ProvisioningError(f"cannot set the hostname of {machine}: {res.stderr}")
        self._wait_ready(lab, machine, init, progress)

    def _wait_ssh(self, lab: LabRef, machine: str) -> None:
        """Until `vagrant ssh-config` knows an address and a command runs over it."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                res = self._ssh(lab, machine).run(["true"], timeout=20)
                if res.ok:
                    return
                last = (res.stderr or res.stdout).strip()[-200:] or f"exit {res.exit_code}"
            except MachineUnavailable as exc:
                last = str(exc)
                Ssh(lab, machine).forget()
                if not self._domain_running(lab, machine):
                    break
            time.sleep(2)
        raise ProvisioningError(
            f"machine `{machine}` of lab `{lab.key}` does not answer over SSH (last: {last})",
            hint=f"look at its console: virsh console {domain_name(lab, machine)}",
        )

    def _wait_ready(self, lab: LabRef, machine: str, init: str, progress: Progress) -> None:
        if init == "none":
            return
        progress(f"waiting for systemd in {machine}")
        deadline = time.monotonic() + READY_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            left = max(5.0, deadline - time.monotonic())
            res = self.exec(
                lab, machine, ["systemctl", "is-system-running", "--wait"], timeout=left
            )
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return
            if state in ("maintenance", "stopping", "offline"):
                break
            time.sleep(1)
        raise ProvisioningError(
            f"systemd in `{machine}` did not finish booting (state: {state or 'unknown'})",
            hint=f"look inside: guestlab exec ... {machine} -- systemctl --failed",
        )

    def _ssh(self, lab: LabRef, machine: str) -> Ssh:
        """The machine over ssh, asking Vagrant for its ssh-config the first time."""
        ssh = Ssh(lab, machine)
        if ssh.config.exists():
            return ssh
        if machine not in self._meta(lab).get("machines", {}):
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist",
                hint="bring the lab up first: guestlab up",
            )
        try:
            ssh.save_config(self._vagrant(lab).ssh_config(vm_name=machine))
        except subprocess.CalledProcessError:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` has no SSH address (is it running?)",
                hint=f"see {lab_dir(lab) / 'vagrant.log'}",
            ) from None
        return ssh

    def _domain_running(self, lab: LabRef, machine: str) -> bool:
        if self._meta(lab).get("provider") != "libvirt":
            return True
        return libvirt.domain_state(domain_name(lab, machine)) == "running"

    # -- the contract ----------------------------------------------------------------------
    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        meta = self._meta(lab)
        if machine not in meta.get("machines", {}):
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist",
                hint="bring the lab up first: guestlab up",
            )
        if meta["provider"] == "docker":
            return self._docker().engine.exec(lab, machine, argv, timeout=timeout)
        not_running = MachineUnavailable(
            f"machine `{machine}` of lab `{lab.key}` is not running",
            hint=f"start it: cd {lab_dir(lab)} && vagrant up {machine}",
        )
        if not self._domain_running(lab, machine):
            # asked first (20 ms): ssh to a VM that vanished would wait for its timeouts
            raise not_running
        try:
            return self._ssh(lab, machine).run(argv, timeout=timeout)
        except MachineUnavailable:
            if not self._domain_running(lab, machine):
                raise not_running from None
            # the VM runs: its address may have changed; ask Vagrant again, once
            Ssh(lab, machine).forget()
            return self._ssh(lab, machine).run(argv, timeout=timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        if self._meta(lab).get("provider") == "docker":
            self._docker().engine.put_file(lab, machine, dest, data, mode)
            return
        self._ssh(lab, machine).put_file(dest, data, mode)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        lab = target.lab
        provider = self._meta(source.lab).get("provider")
        if provider == "docker":
            progress(f"copying {source.name} into {target.name}")
            image = self._docker().commit(source.lab, source.name, f"{target.name}-clone",
                                          target.labels)  # fmt: skip
            extra: dict[str, Any] = {"docker_image": image, "clone_of": source.name}
        elif provider == "libvirt":
            src = domain_name(source.lab, source.name)
            dst = domain_name(lab, target.name)
            if libvirt.domain_exists(dst):
                raise ProvisioningError(
                    f"machine `{target.name}` of lab `{lab.key}` already exists ({dst})",
                    hint="remove the lab first: guestlab down",
                )
            # data still in the guest's page cache must reach its disk before the copy
            self.exec(source.lab, source.name, ["sync"], timeout=60)
            progress(f"copying the disk of {source.name} (paused for the copy)")
            extra = {"disk": libvirt.copy_disk(src, dst), "clone_of": source.name, "box": None}
        else:
            raise ProvisioningError(
                f"clones of Vagrant machines need the libvirt or docker provider (this lab "
                f"uses {provider or 'none'})",
                hint="use the docker or lxd backend for this scenario",
            )
        with self._editing(lab) as m:
            m["machines"][target.name] = self._machine_entry(target, m, **extra)
        progress(f"vagrant up {target.name} from the copy")
        self._up(lab, target.name, progress)
        self._after_boot(lab, target.name, target.hostname or target.name, target.init, progress)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        provider = self._meta(lab).get("provider")
        for spec in machines:
            if provider == "docker":
                self._docker().commit(lab, spec.name, f"{spec.name}-start", spec.labels)
            elif provider == "libvirt":
                libvirt.take_snapshot(domain_name(lab, spec.name))
            else:
                raise ProvisioningError("snapshots need the libvirt or docker provider")

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        docker = self._meta(lab).get("provider") == "docker"
        for spec in machines:
            if docker:
                self._restore_container(lab, spec, progress)
                continue
            dom = domain_name(lab, spec.name)
            if libvirt.SNAPSHOT not in libvirt.snapshots(dom):
                raise _no_start(lab, spec)
            progress(f"restoring {spec.name}")
            Ssh(lab, spec.name).forget()  # the guest's end of the connection goes back
            libvirt.revert_snapshot(dom)
        for spec in machines:
            if docker:
                self._docker().engine.wait_ready(lab, spec.name, spec.init, progress)
                continue
            self._wait_ssh(lab, spec.name)
            self._wait_ready(lab, spec.name, spec.init, progress)

    def _restore_container(self, lab: LabRef, spec: MachineSpec, progress: Progress) -> None:
        """A new container from the starting commit, made by Vagrant like the first one."""
        from orchestrator.backends.vagrant.docker_provider import image_repo

        docker = self._docker()
        start = f"{image_repo(lab)}:{spec.name}-start"
        if not docker.has_image(start):
            raise _no_start(lab, spec)
        progress(f"restoring {spec.name}")
        docker.remove(lab, spec.name)
        with self._editing(lab) as m:
            m["machines"][spec.name]["docker_image"] = start
        self._up(lab, spec.name, progress)
        docker.release_boot(lab, spec.name, spec.init)

    def destroy(self, lab: LabRef) -> FoundResources:
        found = FoundResources()
        meta = self._meta(lab)
        provider = meta.get("provider") or self._provider()
        if provider == "docker":
            # the engine removes all (and Vagrant's record goes with the lab's directory)
            found = self._docker().destroy(lab)
        for machine in meta.get("machines", {}):
            Ssh(lab, machine).forget()
        if provider == "libvirt" and shutil.which("virsh"):
            libvirt.destroy_lab(lab, meta, found)
        elif provider == "virtualbox" and (lab_dir(lab) / "Vagrantfile").exists():
            try:
                self._vagrant(lab).destroy()
            except subprocess.CalledProcessError:
                raise self._failed(lab, "destroy --force", []) from None
            found.machines += [m for m in meta.get("machines", {}) if m not in found.machines]
        root = lab_dir(lab)
        if root.exists():
            shutil.rmtree(root)
            with contextlib.suppress(OSError):
                root.parent.rmdir()  # the lab's directory, if no other backend uses it
        return found

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        out: dict[str, FoundResources] = {}
        mine = paths.store_id()
        docker = self._provider() == "docker"
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
            for key, found in self._docker().find(lab).items():
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

    def host_root_risk(self) -> str | None:
        """A VM shares no kernel with the host; the docker provider is the docker backend."""
        if self._provider() == "docker":
            return self._docker().engine.host_root_risk()
        return None

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        if self._meta(lab).get("provider") == "docker":
            return self._docker().engine.shell_argv(lab, machine)
        return Ssh(lab, machine).shell_argv()


def _replace(path: Path, text: str) -> None:
    """Write a file whole, so that a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _merge(out: dict[str, FoundResources], key: str, found: FoundResources) -> None:
    """Add what one source found of a lab, each name once (several sources see a lab)."""
    res = out.setdefault(key, FoundResources())
    res.machines += [m for m in found.machines if m not in res.machines]
    res.other += [o for o in found.other if o not in res.other]


def _no_start(lab: LabRef, spec: MachineSpec) -> ProvisioningError:
    return ProvisioningError(
        f"machine `{spec.name}` of lab `{lab.key}` has no starting snapshot",
        hint="bring the lab up again: guestlab down && guestlab up",
    )
