"""Lab machines never reach the host's own services: one chain of the host firewall.

Lab networks route nowhere beyond the host, but each has a bridge on the host with an
address, so any host service on a wildcard address would answer a machine. Every lab
bridge is named with a prefix, and the chain GUESTLAB-INPUT, jumped to first from INPUT,
drops what arrives on such a bridge for the host itself: everything from container labs;
from VM labs all but the replies to the host's own connections (SSH into the VM) and
DHCP. Traffic between machines of one lab is bridged, not delivered to the host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from typing import TYPE_CHECKING

from orchestrator import paths
from orchestrator.errors import ProvisioningError
from orchestrator.messages import _

if TYPE_CHECKING:
    import subprocess

CHAIN = "GUESTLAB-INPUT"
CONTAINER_PREFIX = "glb"  # Docker lab networks
VM_PREFIX = "glv"  # libvirt lab networks
#: written as `iptables -S` prints them, so that a chain already right is left alone
RULES = (
    ("-i", f"{CONTAINER_PREFIX}+", "-j", "DROP"),
    ("-i", f"{VM_PREFIX}+", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
    ("-i", f"{VM_PREFIX}+", "-p", "udp", "-m", "udp", "--dport", "67", "-j", "ACCEPT"),
    ("-i", f"{VM_PREFIX}+", "-j", "DROP"),
)
_done = threading.Event()
_lock = threading.Lock()


def bridge_name(prefix: str, network: str) -> str:
    """A lab network's host interface: the prefix and a digest (15 characters)."""
    return prefix + hashlib.sha256(network.encode()).hexdigest()[:12]


def ensure_host_drop() -> None:
    """Make the chain as RULES says, for IPv4 and IPv6, once per process; raise if not."""
    if _done.is_set():
        return
    # the chain is the host's: two guestlab processes never rewrite it at once, whichever
    # state store each belongs to
    with _lock, open(paths.host_locks_dir() / "guestlab-firewall.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _done.is_set():
            return
        tools = ["iptables"] + (["ip6tables"] if os.path.exists("/proc/net/if_inet6") else [])
        for tool in tools:
            _ensure(tool)
        _done.set()


def expected(tool: str = "iptables") -> list[str]:
    """`TOOL -S CHAIN` as it reads when the chain is right."""
    return [f"-N {CHAIN}", *(f"-A {CHAIN} {' '.join(r)}" for r in RULES)]


def _ensure(tool: str) -> None:
    # here, not at the top: opening a lab loads this module for its names alone
    import shutil
    import subprocess

    path, restore = shutil.which(tool), shutil.which(f"{tool}-restore")
    if path is None or restore is None:
        raise ProvisioningError(
            _("{tool} is missing: lab machines could reach this host's services").format(tool=tool),
            hint="apt-get install -y iptables",
        )

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([path, "-w", *args], capture_output=True, text=True, check=False)

    if call("-S", CHAIN).stdout.splitlines() != expected(tool):
        # one transaction (naming the chain empties it, or makes it): no packet meets half
        # a chain, where rule by rule a VM's DHCP could meet the final DROP first
        rules = "".join(f"{line}\n" for line in expected(tool)[1:])
        table = f"*filter\n:{CHAIN} - [0:0]\n{rules}COMMIT\n"
        _must(
            subprocess.run(
                [restore, "-w", "--noflush"], input=table, capture_output=True, text=True,
                check=False,
            ),
            tool,
        )  # fmt: skip
    if call("-C", "INPUT", "-j", CHAIN).returncode != 0:
        _must(call("-I", "INPUT", "1", "-j", CHAIN), tool)


def _must(done: subprocess.CompletedProcess[str], tool: str) -> None:
    if done.returncode != 0:
        raise ProvisioningError(
            _("could not keep lab machines away from the host ({tool}: {stderr})").format(
                tool=tool, stderr=done.stderr.strip()[:200]
            ),
            hint=_("guestlab must run as root on the host"),
        )


def in_place() -> bool:
    """Whether the IPv4 chain is there and jumped to (for `doctor`)."""
    import shutil
    import subprocess

    path = shutil.which("iptables")
    if path is None:
        return False
    ok = subprocess.run([path, "-w", "-C", "INPUT", "-j", CHAIN], capture_output=True)
    chain = subprocess.run([path, "-w", "-S", CHAIN], capture_output=True, text=True)
    return ok.returncode == 0 and chain.stdout.splitlines() == expected()
