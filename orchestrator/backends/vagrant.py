"""Vagrant backend: machines are real virtual machines, driven through python-vagrant.

One lab is one directory, `<labs>/<lab key>/vagrant/`, holding a Vagrantfile rendered from
`templates/Vagrantfile.j2` (for students who want to see how it was made), `meta.json`
(the labels and every machine's settings: the source of truth for `find`), the lab's SSH
key pair and the cached `vagrant ssh-config` of each machine.

Providers, in order of preference: libvirt (KVM when it really works here, QEMU software
emulation when not; the preflight decides once and caches the answer), VirtualBox, and
docker, which is flagged as not a real VM. With libvirt every lab gets an isolated network
of its own (no forwarding), every domain carries the labels in its description, so a lab
whose directory was lost is still found and removed. Commands run over plain ssh with the
`vagrant ssh-config` output and a shared connection per machine: `vagrant ssh -c` costs
two to three seconds per command, this a fraction of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import ipaddress
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from orchestrator import paths
from orchestrator.backends.base import (
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
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
    UsageError,
)

URI = "qemu:///system"
POOL = os.environ.get("GUESTLAB_LIBVIRT_POOL", "guestlab")
SNAPSHOT = "guestlab-start"
DESCRIPTION_PREFIX = "guestlab "
READY_TIMEOUT = 300.0  # a cold boot under software emulation takes about a minute
UP_TIMEOUT = 900.0
#: commands run under coreutils `timeout` inside; this much longer we stop waiting outside
CLIENT_GRACE = 15.0
SUBNETS = ipaddress.ip_network("192.168.128.0/17")  # /24s for labs' isolated networks
KVM_CACHE = "vagrant-kvm.json"
PROBE_VERSION = 2  # a cached answer of another version of the probe is asked again
PROVIDERS = ("libvirt", "virtualbox", "docker")

INSTALL_FIX = (
    "apt-get install -y vagrant vagrant-libvirt libvirt-daemon-system "
    "libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils extlinux "
    "syslinux-common (or run scripts/setup/vagrant.sh)"
)
LIBVIRTD_FIX = (
    "start libvirt: `virtlogd -d && libvirtd -d` where PID 1 is not systemd, else "
    "`systemctl start libvirtd` (scripts/setup/vagrant.sh does either)"
)
POOL_FIX = (
    f"define guestlab's storage pool: virsh pool-define-as {POOL} dir --target "
    f"/var/lib/guestlab/libvirt && virsh pool-build {POOL} && virsh pool-start {POOL} "
    "(or run scripts/setup/vagrant.sh)"
)
_NOISE = re.compile(r" -- |version|metadata|https?://")
#: a boot sector that writes "OK" to the first serial port: the smallest guest there is
PROBE_SECTOR = bytes.fromhex("baf803b04feeb04beeb00aeef4ebfd")


# -- names ------------------------------------------------------------------------------
def lab_digest(lab: LabRef) -> str:
    return hashlib.sha256(lab.key.encode()).hexdigest()[:8]


def domain_prefix(lab: LabRef) -> str:
    """Prefix of the lab's libvirt domains and volumes (vagrant-libvirt's default_prefix)."""
    return f"gl-{lab_digest(lab)}-"


def domain_name(lab: LabRef, machine: str) -> str:
    """The domain vagrant-libvirt creates: the prefix plus the machine name it keeps."""
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


def _ruby(value: Any) -> str:
    """A Ruby literal: single-quoted strings, so `#{...}` in a name is never interpolated."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_ruby(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def render_vagrantfile(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator.backends", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Ruby, not HTML: values go through the `ruby` filter instead
    )
    env.filters["ruby"] = _ruby
    env.filters["oneline"] = lambda v: " ".join(str(v).split())
    return env.get_template("Vagrantfile.j2").render(**context)


# -- small process helpers ----------------------------------------------------------------
def _run(argv: Sequence[str], *, timeout: float = 120, input: bytes | None = None) -> str:
    """Run a host command; a non-zero exit raises ProvisioningError with its stderr."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise BackendUnavailable(f"`{argv[0]}` is not installed", hint=INSTALL_FIX) from None
    except subprocess.TimeoutExpired:
        raise ProvisioningError(f"`{' '.join(argv[:3])}` took more than {timeout:g} s") from None
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
        raise ProvisioningError(f"`{' '.join(argv[:4])}` failed: {err[-600:]}")
    return proc.stdout.decode("utf-8", "replace")


def virsh(*args: str, timeout: float = 120) -> str:
    return _run(["virsh", "-c", URI, "-q", *args], timeout=timeout)


def virsh_ok(*args: str) -> bool:
    try:
        virsh(*args)
    except (ProvisioningError, BackendUnavailable):
        return False
    return True


# -- KVM preflight -----------------------------------------------------------------------
def probe_kvm(timeout: float = 8.0) -> tuple[bool, str]:
    """Whether KVM really runs a guest here, and if not, why (one short phrase).

    A /dev/kvm can exist and still be useless: a paravirtual nested one (kvm_pvm) runs a
    trivial guest but no stock kernel (seen here: "failed to set MSR 0x10a" at start-up,
    or "emulation failure" later). So the host must show vmx or svm and no kvm_pvm, and a
    tiny guest with the host's CPU model, as libvirt starts KVM domains, must say "OK".
    """
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no permission on /dev/kvm"
    if os.path.exists("/sys/module/kvm_pvm"):
        return False, "/dev/kvm is kvm_pvm, a paravirtual nested KVM stock kernels fail under"
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    if "vmx" not in flags and "svm" not in flags:
        return False, "the CPU shows neither vmx nor svm"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False, "qemu-system-x86_64 is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(PROBE_SECTOR + bytes(510 - len(PROBE_SECTOR)) + b"\x55\xaa")
        argv = [
            qemu, "-accel", "kvm", "-cpu", "host", "-display", "none", "-monitor", "none",
            "-nodefaults", "-serial", "stdio", "-no-reboot",
            "-drive", f"file={disk},format=raw,if=floppy",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    if b"OK" in out:
        return True, "a test guest ran under KVM"
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return False, "a test guest did not run under KVM" + (f" ({lines[-1][:120]})" if lines else "")


def _kvm_node_hidden() -> bool:
    """/dev/kvm without its group (no udev here): libvirt's QEMU user cannot open it."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return False
    return st.st_gid == 0 and not st.st_mode & 0o060


def kvm_status() -> tuple[bool, str]:
    """The probe's answer, cached in <home>/vagrant-kvm.json per kernel release."""
    forced = os.environ.get("GUESTLAB_VAGRANT_KVM", "").lower()
    if forced in ("0", "no", "false"):
        return False, "GUESTLAB_VAGRANT_KVM says not to use it"
    cache = paths.ensure(paths.home()) / KVM_CACHE
    kernel = os.uname().release
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(cache.read_text())
        if data["kernel"] == kernel and data.get("probe") == PROBE_VERSION:
            return bool(data["usable"]), str(data["reason"])
    usable, reason = probe_kvm()
    record = {
        "probe": PROBE_VERSION,
        "kernel": kernel,
        "usable": usable,
        "reason": reason,
        "checked": time.time(),
    }
    with contextlib.suppress(OSError):
        cache.write_text(json.dumps(record, indent=2) + "\n")
    return usable, reason


# -- the backend ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Engine:
    provider: str
    kvm: bool
    kvm_reason: str


class VagrantBackend:
    """Machines as Vagrant machines: real VMs with libvirt or VirtualBox."""

    name = "vagrant"

    def __init__(self) -> None:
        self._engine: _Engine | None = None
        self._version: str | None = None
        self._lock = threading.Lock()  # meta.json and the Vagrantfile, between threads

    # -- what this host offers -----------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        if self._provider_guess() == "docker":
            # containers, not VMs; and no clone or snapshot through Vagrant's docker provider
            return frozenset({"systemd"})
        return frozenset({"systemd", "clone", "snapshot", "vm"})

    @property
    def virtualization(self) -> str:
        """What systemd-detect-virt prints inside: kvm, qemu, oracle or docker."""
        provider = self._provider_guess()
        if provider == "docker":
            return "docker"
        if provider == "virtualbox":
            return "oracle"
        return "kvm" if kvm_status()[0] else "qemu"

    def _provider_guess(self) -> str:
        if self._engine is not None:
            return self._engine.provider
        forced = os.environ.get("GUESTLAB_VAGRANT_PROVIDER")
        if forced in PROVIDERS:
            return forced
        if shutil.which("virsh") or not (shutil.which("VBoxManage") or shutil.which("docker")):
            return "libvirt"
        return "virtualbox" if shutil.which("VBoxManage") else "docker"

    def availability(self) -> Availability:
        try:
            return self._availability()
        except Exception as exc:  # availability never raises: say what went wrong instead
            return Availability(False, f"cannot check Vagrant: {exc}", INSTALL_FIX)

    def _availability(self) -> Availability:
        exe = shutil.which("vagrant")
        if exe is None:
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
        return "vagrant-libvirt" in _run(["vagrant", "plugin", "list"], timeout=60)

    def _check_libvirt(self) -> Availability:
        if shutil.which("virsh") is None:
            return Availability(False, "libvirt's client (virsh) is not installed", INSTALL_FIX)
        if not self._has_libvirt_plugin():
            return Availability(False, "the vagrant-libvirt plugin is missing", INSTALL_FIX)
        try:
            version = virsh("version", "--daemon", timeout=15)
        except (ProvisioningError, BackendUnavailable) as exc:
            return Availability(False, f"libvirtd does not answer ({exc})", LIBVIRTD_FIX)
        try:
            state = virsh("pool-info", POOL, timeout=15)
        except ProvisioningError:
            return Availability(False, f"libvirt has no storage pool `{POOL}`", POOL_FIX)
        if not re.search(r"^State:\s+running", state, re.M):
            return Availability(False, f"libvirt's storage pool `{POOL}` is not running", POOL_FIX)
        usable, reason = kvm_status()
        self._engine = _Engine("libvirt", usable, reason)
        found = re.search(r"Running hypervisor:\s*(.+)", version)
        hyper = f", {found.group(1).strip()}" if found else ""
        how = "with KVM" if usable else f"with QEMU software emulation (KVM unusable: {reason})"
        detail = f"{self._vagrant_version()}, libvirt {how}{hyper}"
        if _kvm_node_hidden():
            detail += (
                "; slow: /dev/kvm is root-only, so libvirt probes QEMU again at every call "
                "(fix: chgrp kvm /dev/kvm && chmod 660 /dev/kvm, as udev would)"
            )
        return Availability(True, detail)

    def _check_virtualbox(self) -> Availability:
        if shutil.which("VBoxManage") is None:
            return Availability(False, "VirtualBox is not installed", INSTALL_FIX)
        self._engine = _Engine("virtualbox", False, "")
        return Availability(True, f"{self._vagrant_version()}, VirtualBox")

    def _check_docker(self) -> Availability:
        from orchestrator.backends import get

        state = get("docker").availability()
        if not state.usable:
            return Availability(False, f"no provider: {state.detail}", INSTALL_FIX)
        self._engine = _Engine("docker", False, "")
        return Availability(
            True,
            f"{self._vagrant_version()}, docker provider (NOT a real VM: neither libvirt "
            "nor VirtualBox is usable here)",
        )

    def _vagrant_version(self) -> str:
        if self._version is None:
            self._version = _run(["vagrant", "--version"], timeout=60).strip()
        return self._version

    def _eng(self) -> _Engine:
        with self._lock:
            if self._engine is None:
                state = self._availability()
                if not state.usable:
                    raise BackendUnavailable(f"vagrant: {state.detail}", hint=state.fix)
            assert self._engine is not None
            return self._engine

    # -- the lab directory -------------------------------------------------------------
    def _meta_path(self, lab: LabRef) -> Path:
        return lab_dir(lab) / "meta.json"

    def _meta(self, lab: LabRef) -> dict[str, Any]:
        try:
            return json.loads(self._meta_path(lab).read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    def _save_meta(self, lab: LabRef, meta: dict[str, Any]) -> None:
        path = self._meta_path(lab)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _editing(self, lab: LabRef) -> Iterator[dict[str, Any]]:
        """meta.json for changing, then the Vagrantfile rendered again from it."""
        with self._lock, open(paths.locks_dir() / f"vagrant-{lab.key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            meta = self._meta(lab)
            yield meta
            self._save_meta(lab, meta)
            self._write_vagrantfile(lab, meta)

    def _init_lab(self, lab: LabRef) -> None:
        """The lab's directory, key pair, network and meta.json, made once."""
        eng = self._eng()
        root = paths.ensure(lab_dir(lab))
        key = root / "id_ed25519"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"guestlab {lab.key}",
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
                meta["network"]["address"] = self._ensure_network(lab)

    def _write_vagrantfile(self, lab: LabRef, meta: dict[str, Any]) -> None:
        from orchestrator.images.box import insecure_public_key

        if not meta:
            return
        root = lab_dir(lab)
        machines = []
        for name, m in meta["machines"].items():
            machines.append({"name": name, **m, "prefix": domain_prefix(lab)})
        insecure = str(insecure_public_key())[: -len(".pub")]
        text = render_vagrantfile(
            {
                "lab": lab,
                "provider": meta["provider"],
                "driver": meta["driver"],
                "kvm_reason": meta["kvm_reason"],
                "pool": POOL,
                "network": meta["network"],
                "key": str(root / "id_ed25519"),
                "insecure_key": insecure,
                "machines": machines,
            }
        )
        tmp = root / "Vagrantfile.tmp"
        tmp.write_text(text)
        os.replace(tmp, root / "Vagrantfile")

    def _ensure_network(self, lab: LabRef) -> str:
        """Define and start the lab's isolated network; return its address (a /24)."""
        name = network_name(lab)
        with open(paths.locks_dir() / "vagrant-networks.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two labs never pick the same subnet
            if virsh_ok("net-info", name):
                xml = ElementTree.fromstring(virsh("net-dumpxml", name))
                ip = xml.find("ip")
                assert ip is not None
                net = ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", False)
                if not virsh("net-info", name).count("Active:         yes"):
                    virsh("net-start", name)
                return str(net)
            subnet = self._free_subnet(lab)
            host, first, last = subnet[1], subnet[2], subnet[-2]
            # no <forward>: an isolated network, the VMs reach each other and this host only
            xml = (
                f"<network><name>{name}</name>"
                f"<description>{DESCRIPTION_PREFIX}{json.dumps(lab.labels())}</description>"
                "<bridge stp='on' delay='0'/>"
                f"<ip address='{host}' netmask='{subnet.netmask}'>"
                f"<dhcp><range start='{first}' end='{last}'/></dhcp></ip></network>"
            )
            with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
                f.write(xml)
                f.flush()
                virsh("net-define", f.name)
            virsh("net-start", name)
            return str(subnet)

    def _free_subnet(self, lab: LabRef) -> ipaddress.IPv4Network:
        used: list[ipaddress.IPv4Network] = []
        routes = _run(["ip", "-4", "route", "show", "table", "all"], timeout=10)
        for word in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", routes):
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(word, strict=False))  # type: ignore[arg-type]
        for net in virsh("net-list", "--all", "--name").split():
            ip = ElementTree.fromstring(virsh("net-dumpxml", net)).find("ip")
            if ip is not None and ip.get("address"):
                addr = f"{ip.get('address')}/{ip.get('netmask') or ip.get('prefix') or 24}"
                used.append(ipaddress.ip_network(addr, strict=False))  # type: ignore[arg-type]
        candidates = list(SUBNETS.subnets(new_prefix=24))
        start = int(lab_digest(lab), 16) % len(candidates)  # spread labs, keep it stable
        for i in range(len(candidates)):
            net = candidates[(start + i) % len(candidates)]
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                return net  # type: ignore[return-value]
        raise ProvisioningError(f"no free /24 left in {SUBNETS} for the lab's network")

    # -- python-vagrant ----------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VAGRANT_CHECKPOINT_DISABLE="1",  # Vagrant would otherwise call home at each run
            VAGRANT_BOX_UPDATE_CHECK_DISABLE="1",
            LIBVIRT_DEFAULT_URI=URI,
        )
        return env

    def _vagrant(self, lab: LabRef) -> Any:
        import vagrant

        log = lab_dir(lab) / "vagrant.log"
        return vagrant.Vagrant(
            root=str(lab_dir(lab)),
            env=self._env(),
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
            if attempt == 2 or self._domain_exists(domain_name(lab, machine)):
                raise error
            progress(f"`vagrant up {machine}` failed ({str(error).splitlines()[-1]}); again")

    # -- images --------------------------------------------------------------------------
    def has_image(self, image: str) -> bool:
        return box_dir(image, self._provider_guess()) is not None

    def ensure_image(
        self, image: str, progress: Progress, *, build: bool = True, mirror: str | None = None
    ) -> None:
        from orchestrator.images.box import box_name, box_path, ensure_box_file
        from orchestrator.images.catalog import lookup

        lookup(image)
        eng = self._eng()
        if eng.provider == "docker":
            # no box: the docker provider runs the image the docker backend builds
            from orchestrator.backends import get

            get("docker").ensure_image(image, progress, build=build)
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
                cached = box_path(image)
                if not cached.exists() and not build:
                    raise UsageError(
                        f"the Vagrant box {box_name(image)} does not exist yet: build it with "
                        f"`guestlab image build {image} --backend vagrant`",
                        hint=f"guestlab image build {image} --backend vagrant",
                    )
                box_file = ensure_box_file(image, mirror=mirror, progress=progress)
                progress(f"adding {box_file.name} to Vagrant as {box_name(image)}")
                _run(
                    ["vagrant", "box", "add", "--force", "--name", box_name(image),
                     "--provider", "libvirt", str(box_file)],
                    timeout=600,
                )  # fmt: skip
            self._upload_box(image, progress)

    def import_image(self, image: str, tarball: Path, progress: Progress) -> None:
        """`image build --rebuild`: build the box again from the fresh rootfs and add it."""
        from orchestrator.images.box import box_name, ensure_box_file

        box_file = ensure_box_file(image, progress=progress, rebuild=True)
        _run(
            ["vagrant", "box", "add", "--force", "--name", box_name(image),
             "--provider", "libvirt", str(box_file)],
            timeout=600,
        )  # fmt: skip
        self._upload_box(image, progress)

    def _upload_box(self, image: str, progress: Progress) -> None:
        """Put the box's disk into the pool under the name vagrant-libvirt looks for.

        vagrant-libvirt would copy it through its own slow upload on the first `up`
        (about two minutes here); virsh does it in a second.
        """
        found = box_dir(image, "libvirt")
        if found is None:
            return
        img = found / "box.img"
        vol = box_volume_name(image, img)
        if virsh_ok("vol-info", "--pool", POOL, vol):
            return
        progress(f"uploading the box's disk into libvirt's pool {POOL} as {vol}")
        info = json.loads(_run(["qemu-img", "info", "--output=json", str(img)]))
        virsh("vol-create-as", POOL, vol, str(info["virtual-size"]), "--format", "qcow2")
        try:
            virsh("vol-upload", "--pool", POOL, vol, str(img), timeout=600)
        except ProvisioningError:
            virsh_ok("vol-delete", "--pool", POOL, vol)  # no half-uploaded box for Vagrant
            raise

    # -- machines ------------------------------------------------------------------------
    def _machine_entry(self, spec: MachineSpec, **extra: Any) -> dict[str, Any]:
        from orchestrator.backends.docker import image_ref
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
            "docker_image": image_ref(spec.image),
            "docker_args": self._docker_args(spec),
        }
        entry.update(extra)
        return entry

    @staticmethod
    def _docker_args(spec: MachineSpec) -> list[str]:
        args = ["--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "--memory", str(spec.memory)]  # fmt: skip
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        return args

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        lab = spec.lab
        if self._domain_exists(domain_name(lab, spec.name)):
            raise ProvisioningError(
                f"machine `{spec.name}` of lab `{lab.key}` already exists",
                hint="remove the lab first: guestlab down",
            )
        self.ensure_image(spec.image, progress, build=False)
        self._init_lab(lab)
        with self._editing(lab) as meta:
            meta["machines"][spec.name] = self._machine_entry(spec)
        progress(f"vagrant up {spec.name} (a real VM: a minute or so under emulation)")
        self._up(lab, spec.name, progress)
        self._after_boot(lab, spec.name, spec.hostname or spec.name, spec.init, progress)

    def _after_boot(
        self, lab: LabRef, machine: str, hostname: str | None, init: str, progress: Progress
    ) -> None:
        """SSH as the lab's key only, the hostname when Vagrant did not set it, and ready."""
        if self._meta(lab)["provider"] == "docker":
            self._wait_ready(lab, machine, init, progress)
            return
        self._forget_ssh(lab, machine)
        self._wait_ssh(lab, machine, progress)
        pub = (lab_dir(lab) / "id_ed25519.pub").read_text()
        res = self._ssh(
            lab,
            machine,
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
            res = self._ssh(lab, machine, ["sh", "-c", script, "sh", hostname], timeout=60)
            if not res.ok:
                raise ProvisioningError(f"cannot set the hostname of {machine}: {res.stderr}")
        self._wait_ready(lab, machine, init, progress)

    def _wait_ssh(self, lab: LabRef, machine: str, progress: Progress) -> None:
        """Until `vagrant ssh-config` knows an address and a command runs over it."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                res = self._ssh(lab, machine, ["true"], timeout=20)
                if res.ok:
                    return
                last = (res.stderr or res.stdout).strip()[-200:] or f"exit {res.exit_code}"
            except MachineUnavailable as exc:
                last = str(exc)
                self._forget_ssh(lab, machine)
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

    # -- ssh -----------------------------------------------------------------------------
    def _ssh_config(self, lab: LabRef, machine: str) -> Path:
        """`vagrant ssh-config MACHINE`, asked once and kept in the lab's directory."""
        cfg = lab_dir(lab) / "ssh" / f"{machine}.config"
        if cfg.exists():
            return cfg
        if not (lab_dir(lab) / "Vagrantfile").exists() or machine not in self._meta(lab).get(
            "machines", {}
        ):
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist",
                hint="bring the lab up first: guestlab up",
            )
        try:
            text = self._vagrant(lab).ssh_config(vm_name=machine)
        except subprocess.CalledProcessError:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` has no SSH address (is it running?)",
                hint=f"see {lab_dir(lab) / 'vagrant.log'}",
            ) from None
        paths.ensure(cfg.parent)
        cfg.write_text(text)
        return cfg

    def _control_path(self, lab: LabRef, machine: str) -> str:
        # sockets must stay short (108 bytes): a hash under guestlab's home, not the lab dir
        digest = hashlib.sha256(f"{lab.key}\0{machine}".encode()).hexdigest()[:16]
        return str(paths.ensure(paths.home() / "ssh") / digest)

    def _ssh_base(self, lab: LabRef, machine: str) -> list[str]:
        return [
            "ssh", "-F", str(self._ssh_config(lab, machine)),
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", f"ControlPath={self._control_path(lab, machine)}",
        ]  # fmt: skip

    def _master(self, lab: LabRef, machine: str) -> None:
        """One shared connection per machine, started apart so it holds none of our pipes."""
        base = self._ssh_base(lab, machine)
        check = subprocess.run(
            [*base, "-O", "check", machine], capture_output=True, timeout=10, check=False
        )
        if check.returncode == 0:
            return
        subprocess.run(
            [*base, "-o", "ControlMaster=yes", "-o", "ControlPersist=300", "-f", "-N", machine],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=40,
            check=False,
        )  # a failure shows in the command that follows, which connects by itself

    def _forget_ssh(self, lab: LabRef, machine: str) -> None:
        """Drop the cached ssh-config and the shared connection (a VM restarted, or went)."""
        cfg = lab_dir(lab) / "ssh" / f"{machine}.config"
        if cfg.exists():
            subprocess.run(
                ["ssh", "-F", str(cfg), "-o", f"ControlPath={self._control_path(lab, machine)}",
                 "-O", "exit", machine],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            cfg.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.unlink(self._control_path(lab, machine))

    def _ssh(
        self,
        lab: LabRef,
        machine: str,
        argv: Sequence[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run argv as root through sudo over ssh.

        Output goes to files inside and is printed at the end: a background process left
        holding stdout (`daemon &`) would otherwise keep ssh waiting until it exits.
        """
        limit = max(timeout, 0.1)
        script = (
            "d=$(mktemp -d) || exit 255; t=$1; shift; "
            'timeout --kill-after=2 "$t" "$@" >"$d/o" 2>"$d/e"; rc=$?; '
            'cat "$d/o"; cat "$d/e" >&2; rm -rf "$d"; exit $rc'
        )
        remote = shlex.join(["sudo", "-n", "--", "sh", "-c", script, "sh", f"{limit:.3f}", *argv])
        self._master(lab, machine)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [*self._ssh_base(lab, machine), machine, remote],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=limit + CLIENT_GRACE,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ExecResult(124, "", f"no answer from {machine} in {limit:g} s", timed_out=True)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        code = proc.returncode
        if code == 255 and _ssh_failed(err):
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not answer over SSH: "
                f"{err.strip()[-200:]}"
            )
        timed_out = code in (124, 137) and time.monotonic() - started >= limit * 0.95
        return ExecResult(code, out, err, timed_out=timed_out)

    # -- the contract ----------------------------------------------------------------------
    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        meta = self._meta(lab)
        if machine not in meta.get("machines", {}):
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist",
                hint="bring the lab up first: guestlab up",
            )
        if meta["provider"] == "docker":
            return self._docker().exec(lab, machine, argv, timeout=timeout)
        if not self._domain_running(lab, machine):
            # asked first (20 ms): ssh to a VM that vanished would wait for its timeouts
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` is not running",
                hint=f"start it: cd {lab_dir(lab)} && vagrant up {machine}",
            )
        try:
            return self._ssh(lab, machine, argv, timeout=timeout)
        except MachineUnavailable:
            if not self._domain_running(lab, machine):
                raise MachineUnavailable(
                    f"machine `{machine}` of lab `{lab.key}` is not running",
                    hint=f"start it: cd {lab_dir(lab)} && vagrant up {machine}",
                ) from None
            # the VM runs: its address may have changed; ask Vagrant again, once
            self._forget_ssh(lab, machine)
            return self._ssh(lab, machine, argv, timeout=timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        if self._meta(lab).get("provider") == "docker":
            self._docker().put_file(lab, machine, dest, data, mode)
            return
        script = (
            'set -e; mkdir -p -- "$(dirname -- "$1")"; t=$(mktemp "$1.XXXXXX"); '
            'cat >"$t"; chown root:root "$t"; chmod "$2" "$t"; mv -f -- "$t" "$1"'
        )
        res = self._ssh(
            lab, machine, ["sh", "-c", script, "sh", dest, f"{mode:o}"], timeout=60, stdin=data
        )
        if not res.ok:
            raise ProvisioningError(f"cannot write {dest} in {machine}: {res.stderr.strip()}")

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        lab = target.lab
        meta = self._meta(source.lab)
        if meta.get("provider") != "libvirt":
            raise ProvisioningError(
                f"clones of Vagrant machines need the libvirt provider (this lab uses "
                f"{meta.get('provider', 'none')})",
                hint="use the docker or lxd backend for this scenario",
            )
        src = domain_name(source.lab, source.name)
        dst = domain_name(lab, target.name)
        if self._domain_exists(dst):
            raise ProvisioningError(
                f"machine `{target.name}` of lab `{lab.key}` already exists ({dst})",
                hint="remove the lab first: guestlab down",
            )
        disk = self._disk_path(src)
        copy = f"{dst}.qcow2"
        dest = Path(disk).parent / copy
        # data still in the guest's page cache must reach its disk before the copy
        self.exec(source.lab, source.name, ["sync"], timeout=60)
        progress(f"copying the disk of {source.name} (paused for the copy)")
        virsh("suspend", src)  # QEMU flushes its own caches when it pauses
        try:
            # the overlay only, sharing the box's read-only base image: a second or two
            _run(["cp", "--sparse=always", disk, str(dest)], timeout=600)
        finally:
            virsh("resume", src)
        virsh("pool-refresh", POOL)  # vagrant-libvirt finds the disk through the pool
        with self._editing(lab) as m:
            m["machines"][target.name] = self._machine_entry(
                target, disk=copy, clone_of=source.name, box=None
            )
        progress(f"vagrant up {target.name} from the copied disk")
        self._up(lab, target.name, progress)
        self._after_boot(lab, target.name, target.hostname or target.name, target.init, progress)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        if self._meta(lab).get("provider") == "docker":
            raise ProvisioningError("snapshots need the libvirt provider")
        for spec in machines:
            dom = domain_name(lab, spec.name)
            if SNAPSHOT in self._snapshots(dom):
                virsh("snapshot-delete", dom, SNAPSHOT, timeout=300)
            # a running domain: memory too, so a restore needs no boot
            virsh("snapshot-create-as", dom, SNAPSHOT, "--atomic", timeout=600)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        for spec in machines:
            dom = domain_name(lab, spec.name)
            if SNAPSHOT not in self._snapshots(dom):
                raise ProvisioningError(
                    f"machine `{spec.name}` of lab `{lab.key}` has no starting snapshot",
                    hint="bring the lab up again: guestlab down && guestlab up",
                )
            progress(f"restoring {spec.name}")
            self._forget_ssh(lab, spec.name)  # the guest's end of the connection goes back
            virsh("snapshot-revert", dom, SNAPSHOT, "--running", "--force", timeout=600)
        for spec in machines:
            self._wait_ssh(lab, spec.name, progress)
            self._wait_ready(lab, spec.name, spec.init, progress)

    def destroy(self, lab: LabRef) -> FoundResources:
        found = FoundResources()
        meta = self._meta(lab)
        if meta.get("provider") == "docker":
            found = self._docker().destroy(lab)
        for machine in meta.get("machines", {}):
            self._forget_ssh(lab, machine)
        if meta.get("provider") in (None, "libvirt") and shutil.which("virsh"):
            self._destroy_libvirt(lab, meta, found)
        elif (lab_dir(lab) / "Vagrantfile").exists():
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

    def _destroy_libvirt(self, lab: LabRef, meta: dict[str, Any], found: FoundResources) -> None:
        """The domains, their snapshots and disks, and the network, by name and by label."""
        if not virsh_ok("version"):
            if not meta:
                return
            raise BackendUnavailable("libvirtd does not answer", hint=LIBVIRTD_FIX)
        domains = {m["domain"]: name for name, m in meta.get("machines", {}).items()}
        for dom, labels in self._labelled_domains().items():
            if labels.get(LABEL_LAB) == lab.key:
                domains.setdefault(dom, labels.get(LABEL_MACHINE, dom))
        for dom, machine in domains.items():
            if not self._domain_exists(dom):
                continue
            for snap in self._snapshots(dom):
                virsh("snapshot-delete", dom, snap, timeout=300)
                found.other.append(f"{dom}/{snap}")
            if self._domain_state(dom) != "shut off":
                virsh_ok("destroy", dom)
            virsh("undefine", dom, "--remove-all-storage", "--snapshots-metadata", "--nvram")
            found.machines.append(machine)
        prefix = domain_prefix(lab)
        if virsh_ok("pool-refresh", POOL):
            for vol in virsh("vol-list", POOL).splitlines():
                name = vol.split()[0] if vol.split() else ""
                if name.startswith(prefix):
                    virsh("vol-delete", "--pool", POOL, name)
                    found.other.append(f"volume {name}")
        net = network_name(lab)
        if virsh_ok("net-info", net):
            virsh_ok("net-destroy", net)
            virsh("net-undefine", net)
            found.other.append(f"network {net}")

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        out: dict[str, FoundResources] = {}
        mine = paths.store_id()
        for meta_file in sorted(paths.labs_dir().glob("*/vagrant/meta.json")):
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(meta_file.read_text())
                labels = meta.get("labels", {})
                key = labels.get(LABEL_LAB)
                if not key or (lab is not None and key != lab.key):
                    continue
                if lab is None and labels.get(LABEL_STORE) != mine:
                    continue
                res = out.setdefault(key, FoundResources())
                res.machines += list(meta.get("machines", {}))
                if meta.get("network", {}).get("address"):
                    res.other.append(f"network {meta['network']['name']}")
        if shutil.which("virsh") and virsh_ok("version"):
            # domains whose lab directory is gone (a crash): found by their description
            for _dom, labels in self._labelled_domains().items():
                key = labels.get(LABEL_LAB, "")
                if lab is not None and key != lab.key:
                    continue
                if lab is None and labels.get(LABEL_STORE) != mine:
                    continue
                res = out.setdefault(key, FoundResources())
                machine = labels.get(LABEL_MACHINE, _dom)
                if machine not in res.machines:
                    res.machines.append(machine)
        return out

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        if self._meta(lab).get("provider") == "docker":
            return self._docker().shell_argv(lab, machine)
        cfg = lab_dir(lab) / "ssh" / f"{machine}.config"
        if not cfg.exists():
            return ["sh", "-c", f"cd {shlex.quote(str(lab_dir(lab)))} && vagrant ssh "
                    f"{shlex.quote(machine)} -c 'sudo -i'"]  # fmt: skip
        return ["ssh", "-F", str(cfg), "-t", machine, "sudo", "-i"]

    # -- libvirt helpers -----------------------------------------------------------------
    def _domain_exists(self, dom: str) -> bool:
        return shutil.which("virsh") is not None and virsh_ok("dominfo", dom)

    def _domain_state(self, dom: str) -> str:
        try:
            return virsh("domstate", dom).strip()
        except ProvisioningError:
            return "missing"

    def _domain_running(self, lab: LabRef, machine: str) -> bool:
        if self._meta(lab).get("provider") != "libvirt":
            return True
        return self._domain_state(domain_name(lab, machine)) == "running"

    def _disk_path(self, dom: str) -> str:
        for line in virsh("domblklist", dom, "--details").splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "disk":
                return parts[3]
        raise ProvisioningError(f"domain {dom} has no disk to copy")

    def _snapshots(self, dom: str) -> list[str]:
        try:
            return virsh("snapshot-list", dom, "--name").split()
        except ProvisioningError:
            return []

    def _labelled_domains(self) -> dict[str, dict[str, str]]:
        """Every libvirt domain named gl-* whose description carries guestlab's labels."""
        out: dict[str, dict[str, str]] = {}
        for dom in virsh("list", "--all", "--name").split():
            if not dom.startswith("gl-"):
                continue
            with contextlib.suppress(ProvisioningError, ValueError):
                desc = virsh("desc", dom).strip()
                if desc.startswith(DESCRIPTION_PREFIX):
                    labels = json.loads(desc[len(DESCRIPTION_PREFIX) :])
                    if isinstance(labels, dict) and LABEL_LAB in labels:
                        out[dom] = {str(k): str(v) for k, v in labels.items()}
        return out

    # -- the docker provider: exec and files through the engine ------------------------
    def _docker(self) -> Any:
        """Vagrant's docker provider names containers as the docker backend does not: a
        thin adapter reaching them by the name the Vagrantfile gives (`d.name`)."""
        return _DockerProvider(self)


class _DockerProvider:
    """Exec, files and destroy for labs on Vagrant's docker provider (not real VMs)."""

    def __init__(self, backend: VagrantBackend) -> None:
        self.backend = backend

    def _container(self, lab: LabRef, machine: str) -> Any:
        import docker
        from docker.errors import NotFound

        try:
            c = docker.from_env().containers.get(domain_name(lab, machine))
        except NotFound:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist"
            ) from None
        if c.status != "running":
            raise MachineUnavailable(f"machine `{machine}` of lab `{lab.key}` is {c.status}")
        return c

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        c = self._container(lab, machine)
        started = time.monotonic()
        code, (out, err) = c.exec_run(
            ["timeout", "--kill-after=2", f"{max(timeout, 0.1):g}", *argv], demux=True
        )
        timed_out = code in (124, 137) and time.monotonic() - started >= timeout * 0.95
        return ExecResult(
            code, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"),
            timed_out=timed_out,
        )  # fmt: skip

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        import io
        import posixpath
        import tarfile

        c = self._container(lab, machine)
        c.exec_run(["mkdir", "-p", posixpath.dirname(dest) or "/"])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(dest))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not c.put_archive(posixpath.dirname(dest) or "/", buf.getvalue()):
            raise ProvisioningError(f"cannot write {dest} in {machine}")

    def destroy(self, lab: LabRef) -> FoundResources:
        import docker

        found = FoundResources()
        client = docker.from_env()
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_LAB}={lab.key}"}):
            c.remove(force=True)
            found.machines.append(c.labels.get(LABEL_MACHINE, c.name))
        return found

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return ["docker", "exec", "-it", domain_name(lab, machine), "bash", "-l"]


def _ssh_failed(stderr: str) -> bool:
    """Whether exit 255 came from ssh itself (no connection) rather than the command."""
    needles = (
        "ssh: connect to host", "Connection refused", "Connection timed out",
        "Connection closed", "No route to host", "Could not resolve hostname",
        "Permission denied (publickey", "Connection reset", "kex_exchange_identification",
        "Host is down", "Broken pipe",
    )  # fmt: skip
    return any(n in stderr for n in needles)
