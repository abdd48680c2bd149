"""libvirt through virsh for the Vagrant backend: the KVM probe, domains and their disks
and snapshots, the lab's isolated network, and the box's volume in the pool.

vagrant-libvirt creates the domains; everything it does not do for guestlab (copying a
disk for a clone, snapshots, finding a lab's leftovers by label) is here.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from orchestrator import paths
from orchestrator.backends import firewall
from orchestrator.backends.common import file_lock, lock_path
from orchestrator.backends.contract import (
    LABEL_LAB,
    LABEL_MACHINE,
    FoundResources,
    LabRef,
    Progress,
)
from orchestrator.backends.vagrant.host import (
    DESCRIPTION_PREFIX,
    box_dir,
    box_volume_name,
    domain_prefix,
    lab_digest,
    network_name,
    run_host,
)
from orchestrator.errors import BackendUnavailable, ProvisioningError
from orchestrator.messages import N_, _

URI = "qemu:///system"
POOL = os.environ.get("GUESTLAB_LIBVIRT_POOL", "guestlab")
SNAPSHOT = "guestlab-start"
SUBNETS = ipaddress.ip_network("192.168.128.0/17")  # /24s for labs' isolated networks
KVM_CACHE = "vagrant-kvm.json"
PROBE_VERSION = 2  # a cached answer of another version of the probe is asked again
#: a boot sector that writes "OK" to the first serial port: the smallest guest there is
PROBE_SECTOR = bytes.fromhex("baf803b04feeb04beeb00aeef4ebfd")

LIBVIRTD_FIX = N_(
    "start libvirt: `virtlogd -d && libvirtd -d` where PID 1 is not systemd, else "
    "`systemctl start libvirtd` (scripts/setup/vagrant.sh does either)"
)
#: `{pool}` is POOL
POOL_FIX = N_(
    "define guestlab's storage pool: virsh pool-define-as {pool} dir --target "
    "/var/lib/guestlab/libvirt && virsh pool-build {pool} && virsh pool-start {pool} "
    "(or run scripts/setup/vagrant.sh)"
)


def virsh(*args: str, timeout: float = 120) -> str:
    return run_host(["virsh", "-c", URI, "-q", *args], timeout=timeout)


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
    # kept in English: the answer is cached on disk for every later reader
    if b"OK" in out:
        return True, "a test guest ran under KVM"
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return False, "a test guest did not run under KVM" + (f" ({lines[-1][:120]})" if lines else "")


def kvm_node_hidden() -> bool:
    """/dev/kvm not open to the kvm group (no udev here): libvirt's QEMU user cannot open it.

    Seen here both root-only and handed to another group (gid 104) by something else on
    the host; either way every virsh call took about 4 s instead of a hundredth.
    """
    try:
        st = os.stat("/dev/kvm")
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return False
    return st.st_gid != kvm_gid or st.st_mode & 0o060 != 0o060


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


# -- domains -------------------------------------------------------------------------------
def domain_exists(dom: str) -> bool:
    return shutil.which("virsh") is not None and virsh_ok("dominfo", dom)


#: where libvirtd (qemu:///system) keeps the pid of each running domain's QEMU
QEMU_RUN_DIR = Path("/run/libvirt/qemu")


def qemu_alive(dom: str) -> bool:
    """Whether the domain's QEMU process lives, read from libvirtd's pid file: asked before
    every command in a VM, where a virsh costs 0.14 s. False means "ask virsh"."""
    try:
        os.kill(int((QEMU_RUN_DIR / f"{dom}.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def domain_state(dom: str) -> str:
    try:
        return virsh("domstate", dom).strip()
    except ProvisioningError:
        return "missing"


def snapshots(dom: str) -> list[str]:
    try:
        return virsh("snapshot-list", dom, "--name").split()
    except ProvisioningError:
        return []


def take_snapshot(dom: str) -> None:
    """The lab's starting snapshot of a running domain, replacing an older one."""
    if SNAPSHOT in snapshots(dom):
        virsh("snapshot-delete", dom, SNAPSHOT, timeout=300)
    # a running domain: memory too, so a restore needs no boot
    virsh("snapshot-create-as", dom, SNAPSHOT, "--atomic", timeout=600)


def revert_snapshot(dom: str) -> None:
    virsh("snapshot-revert", dom, SNAPSHOT, "--running", "--force", timeout=600)


def copy_disk(src: str, dst: str) -> str:
    """Copy the disk of domain `src` (paused meanwhile) into the pool; the new file's name."""
    disk = _disk_path(src)
    copy = f"{dst}.qcow2"
    virsh("suspend", src)  # QEMU flushes its own caches when it pauses
    try:
        # the overlay only, sharing the box's read-only base image: a second or two
        run_host(["cp", "--sparse=always", disk, str(Path(disk).parent / copy)], timeout=600)
    finally:
        virsh("resume", src)
    virsh("pool-refresh", POOL)  # vagrant-libvirt finds the disk through the pool
    return copy


def _disk_path(dom: str) -> str:
    for line in virsh("domblklist", dom, "--details").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "disk":
            return parts[3]
    raise ProvisioningError(_("domain {dom} has no disk to copy").format(dom=dom))


def labelled_domains() -> dict[str, dict[str, str]]:
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


def destroy_lab(lab: LabRef, meta: dict[str, Any], found: FoundResources) -> None:
    """The domains, their snapshots and disks, and the network, by name and by label."""
    if not virsh_ok("version"):
        if not meta:
            return
        raise BackendUnavailable(_("libvirtd does not answer"), hint=_(LIBVIRTD_FIX))
    domains = {m["domain"]: name for name, m in meta.get("machines", {}).items()}
    for dom, labels in labelled_domains().items():
        if labels.get(LABEL_LAB) == lab.key:
            domains.setdefault(dom, labels.get(LABEL_MACHINE, dom))
    for dom, machine in domains.items():
        if not domain_exists(dom):
            continue
        for snap in snapshots(dom):
            virsh("snapshot-delete", dom, snap, timeout=300)
            found.other.append(f"{dom}/{snap}")
        if domain_state(dom) != "shut off":
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


# -- the lab's network -------------------------------------------------------------------
def ensure_network(lab: LabRef) -> str:
    """Define and start the lab's isolated network; return its address (a /24)."""
    name = network_name(lab)
    # two labs never pick the same subnet, whichever state store each belongs to
    with file_lock(lock_path("guestlab-vagrant-networks", paths.host_locks_dir())):
        if virsh_ok("net-info", name):
            firewall.ensure_host_drop()
            xml = ElementTree.fromstring(virsh("net-dumpxml", name))
            ip = xml.find("ip")
            assert ip is not None
            net = ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", False)
            if not virsh("net-info", name).count("Active:         yes"):
                virsh("net-start", name)
            return str(net)
        subnet = _free_subnet(lab)
        host, first, last = subnet[1], subnet[2], subnet[-2]
        # no <forward>: an isolated network, the VMs reach each other and this host only;
        # of this host, its DHCP and the replies to its SSH (the firewall chain)
        firewall.ensure_host_drop()
        bridge = firewall.bridge_name(firewall.VM_PREFIX, name)
        xml = (
            f"<network><name>{name}</name>"
            f"<description>{DESCRIPTION_PREFIX}{json.dumps(lab.labels())}</description>"
            f"<bridge name='{bridge}' stp='on' delay='0'/>"
            f"<ip address='{host}' netmask='{subnet.netmask}'>"
            f"<dhcp><range start='{first}' end='{last}'/></dhcp></ip></network>"
        )
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            virsh("net-define", f.name)
        virsh("net-start", name)
        return str(subnet)


def _free_subnet(lab: LabRef) -> ipaddress.IPv4Network:
    used: list[ipaddress.IPv4Network] = []
    routes = run_host(["ip", "-4", "route", "show", "table", "all"], timeout=10)
    for word in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", routes):
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))  # type: ignore[arg-type]
    for net in virsh("net-list", "--all", "--name").split():
        try:
            dumped = virsh("net-dumpxml", net)
        except ProvisioningError:
            continue  # another lab's network, removed since the list: it holds no subnet
        ip = ElementTree.fromstring(dumped).find("ip")
        if ip is not None and ip.get("address"):
            addr = f"{ip.get('address')}/{ip.get('netmask') or ip.get('prefix') or 24}"
            used.append(ipaddress.ip_network(addr, strict=False))  # type: ignore[arg-type]
    candidates = list(SUBNETS.subnets(new_prefix=24))
    start = int(lab_digest(lab), 16) % len(candidates)  # spread labs, keep it stable
    for i in range(len(candidates)):
        net = candidates[(start + i) % len(candidates)]
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net  # type: ignore[return-value]
    raise ProvisioningError(
        _("no free /24 left in {subnets} for the lab's network").format(subnets=SUBNETS)
    )


# -- the box -----------------------------------------------------------------------------
def remove_box_volume(image: str, img: Path) -> None:
    """Delete the box's disk that `upload_box` put into the pool, if it is there."""
    vol = box_volume_name(image, img)
    if virsh_ok("vol-info", "--pool", POOL, vol):
        virsh("vol-delete", "--pool", POOL, vol)


def upload_box(image: str, progress: Progress) -> None:
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
    progress(
        _("uploading the box's disk into libvirt's pool {pool} as {vol}").format(pool=POOL, vol=vol)
    )
    info = json.loads(run_host(["qemu-img", "info", "--output=json", str(img)]))
    virsh("vol-create-as", POOL, vol, str(info["virtual-size"]), "--format", "qcow2")
    try:
        virsh("vol-upload", "--pool", POOL, vol, str(img), timeout=600)
    except ProvisioningError:
        virsh_ok("vol-delete", "--pool", POOL, vol)  # no half-uploaded box for Vagrant
        raise
