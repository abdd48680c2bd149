"""Lab machines never reach the host: a drop rule for every lab bridge.

A lab network is `internal` (no route beyond the host), but its bridge carries the
gateway's address on the host, so any host service listening on a wildcard address would
answer a machine. Every lab bridge is named with BRIDGE_PREFIX, and one rule per address
family drops what arrives on such a bridge for the host itself. Traffic between machines
of one lab is bridged, not delivered to the host, and does not pass this rule.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading

from orchestrator.errors import ProvisioningError

BRIDGE_PREFIX = "glb"
_done = threading.Event()
_lock = threading.Lock()


def bridge_name(network: str) -> str:
    """The host interface of a lab network: the prefix and a digest (15 characters)."""
    return BRIDGE_PREFIX + hashlib.sha256(network.encode()).hexdigest()[:12]


def rule() -> list[str]:
    return ["INPUT", "-i", f"{BRIDGE_PREFIX}+", "-j", "DROP"]


def ensure_host_drop() -> None:
    """Install the drop rule for IPv4 and IPv6 (once per process); raise if impossible."""
    if _done.is_set():
        return
    with _lock:
        if _done.is_set():
            return
        tools = ["iptables"]
        if os.path.exists("/proc/net/if_inet6"):
            tools.append("ip6tables")
        for tool in tools:
            _ensure(tool)
        _done.set()


def _ensure(tool: str) -> None:
    path = shutil.which(tool)
    if path is None:
        raise ProvisioningError(
            f"{tool} is missing: lab machines could reach this host's services",
            hint="apt-get install -y iptables",
        )
    check = subprocess.run([path, "-w", "-C", *rule()], capture_output=True, check=False)
    if check.returncode == 0:
        return
    add = subprocess.run([path, "-w", "-I", *rule()], capture_output=True, text=True, check=False)
    if add.returncode != 0:
        raise ProvisioningError(
            f"could not keep lab machines away from the host ({tool}: {add.stderr.strip()[:200]})",
            hint="guestlab must run as root on the host",
        )


def host_drop_in_place() -> bool:
    """Whether the IPv4 rule is there (for `doctor`)."""
    path = shutil.which("iptables")
    if path is None:
        return False
    return subprocess.run([path, "-w", "-C", *rule()], capture_output=True).returncode == 0
