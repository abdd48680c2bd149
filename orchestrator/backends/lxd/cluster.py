"""LXD clusters: which member holds a lab, the members' state and memory, their errors.

LXD places instances; guestlab only keeps a lab's machines, copies and snapshots together
on one member (`target`): the first machine goes where LXD's scheduler (or the
instructor, `--lxd-target`) puts it, every later one follows it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.backends.contract import LABEL_LAB, LabRef
from orchestrator.backends.lxd.config import CONFIG_PREFIX, instance_name
from orchestrator.errors import MemberUnreachable, ProvisioningError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from pylxd import Client

#: LXD operations (create, copy, restore, delete) in flight at once from this process
DEFAULT_CONCURRENCY = 6


def concurrency() -> int:
    """$GUESTLAB_LXD_CONCURRENCY, else DEFAULT_CONCURRENCY."""
    try:
        return max(1, int(os.environ.get("GUESTLAB_LXD_CONCURRENCY", "")))
    except ValueError:
        return DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class MemberState:
    name: str
    status: str  # Online, Offline, Evacuated...
    message: str = ""

    @property
    def online(self) -> bool:
        return self.status.lower() == "online"


def members(client: Client) -> dict[str, MemberState]:
    """Every member of the cluster and its state (one API call)."""
    found = client.api.cluster.members.get(params={"recursion": 1}).json()["metadata"] or []
    return {
        m["server_name"]: MemberState(m["server_name"], m.get("status", "?"), m.get("message", ""))
        for m in found
    }


def member_memory(client: Client, member: str) -> int:
    """Bytes of memory free on one member, by its own account."""
    res = client.api.resources.get(params={"target": member}).json()["metadata"]["memory"]
    return int(res["total"]) - int(res["used"])


class Placement:
    """Which member each lab is on, and where the instructor wants a lab put."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: dict[str, str] = {}
        self._known: dict[str, str] = {}
        self._lab_locks: dict[str, threading.Lock] = {}
        self._ops = threading.BoundedSemaphore(concurrency())

    def want(self, lab_key: str, member: str | None) -> None:
        """Put the lab on `member` (None: where LXD's scheduler chooses)."""
        with self._lock:
            if member:
                self._wanted[lab_key] = member
            else:
                self._wanted.pop(lab_key, None)
            self._known.pop(lab_key, None)

    def wanted(self, lab_key: str) -> str | None:
        with self._lock:
            return self._wanted.get(lab_key)

    def known(self, lab_key: str) -> str | None:
        with self._lock:
            return self._known.get(lab_key)

    def record(self, lab_key: str, member: str) -> None:
        with self._lock:
            self._known[lab_key] = member

    @contextmanager
    def first_machine(self, lab_key: str) -> Iterator[None]:
        """Held while a lab's first machine is placed: its other machines wait for it."""
        with self._lock:
            lock = self._lab_locks.setdefault(lab_key, threading.Lock())
        with lock:
            yield

    @contextmanager
    def operation(self) -> Iterator[None]:
        """One of the $GUESTLAB_LXD_CONCURRENCY operations allowed at once."""
        with self._ops:
            yield


def lab_member(client: Client, lab_key: str) -> str | None:
    """The member an instance of the lab is on, if any (one API call)."""
    for inst in client.instances.all(recursion=1):
        if (inst.config or {}).get(CONFIG_PREFIX + LABEL_LAB) == lab_key:
            return getattr(inst, "location", None) or None
    return None


def unreachable(member: str, what: str, *, silent: bool = False) -> MemberUnreachable:
    """`what` cannot be reached: its member is offline, or (`silent`) does not answer."""
    said = (
        _("{what} is on LXD cluster member {member}, which does not answer")
        if silent
        else _("{what} is on LXD cluster member {member}, which is offline")
    )
    return MemberUnreachable(
        member,
        said.format(what=what, member=member),
        hint=_(
            "bring {member} back (its other labs return with it), or `guestlab class up`"
            " again to re-create its labs on the other members"
        ).format(member=member),
    )


#: what LXD says when a cluster cannot serve a request, and the one sentence guestlab says
#: and its fix (msgids: said in the reader's language by `cluster_error`)
CLUSTER_ERRORS = (
    (
        ("no available dqlite leader", "failed to begin transaction", "raft", "quorum"),
        N_("the LXD cluster has lost its quorum (too few database members online)"),
        N_("bring members back until most database members are online (`lxc cluster list`)"),
    ),
    (
        ("is offline", "missing event connection", "unable to connect to", "connection refused"),
        N_("an LXD cluster member does not answer"),
        N_("bring it back, or place labs elsewhere: `--lxd-target MEMBER` (`lxc cluster list`)"),
    ),
)


class MemberSilent(ProvisioningError):
    """A cluster member did not answer a request forwarded to it."""


def cluster_error(action: str, exc: BaseException) -> ProvisioningError | None:
    """A one-sentence error with its fix for a cluster failure, else None."""
    text = str(exc).lower()
    for n, (needles, sentence, fix) in enumerate(CLUSTER_ERRORS):
        if any(needle in text for needle in needles):
            kind = MemberSilent if n == 1 else ProvisioningError
            said = _("LXD could not {action}: {error}").format(action=action, error=_(sentence))
            return kind(said, hint=_(fix))
    return None


class ClusterView:
    """Where each instance is and which members are offline, read at most every few
    seconds and shared by threads: a class check asks once, not once per machine."""

    def __init__(self, ttl: float = 3.0) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = -ttl
        self._locations: dict[str, str] = {}
        self._offline: set[str] = set()
        self._names: dict[str, str] = {}
        self._names_at = -ttl

    def offline_member_of(self, client: Client, instance: str) -> str | None:
        """The member holding `instance` when that member is not online, else None."""
        import time

        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                self._offline = {n for n, m in members(client).items() if not m.online}
                self._locations = (
                    {i.name: getattr(i, "location", "") for i in client.instances.all(recursion=1)}
                    if self._offline
                    else {}
                )
                self._at = time.monotonic()
            member = self._locations.get(instance)
        return member if member in self._offline else None

    def name(self, client: Client, lab: LabRef, machine: str, *, new: bool = False) -> str:
        """The instance name of a lab's machine on a cluster: its newest incarnation, or
        (`new`) the next one when the newest is taken, by a member that went offline."""
        at = self.names(client, fresh=new)
        n = 0
        while instance_name(lab, machine, n + 1) in at:
            n += 1
        if new and instance_name(lab, machine, n) in at:
            n += 1
        return instance_name(lab, machine, n)

    def names(self, client: Client, *, fresh: bool = False) -> dict[str, str]:
        """Every instance's name and member, read again when older than the TTL."""
        import time

        with self._lock:
            if fresh or time.monotonic() - self._names_at > self._ttl:
                self._names = {
                    i.name: getattr(i, "location", "") or ""
                    for i in client.instances.all(recursion=1)
                }
                self._names_at = time.monotonic()
            return dict(self._names)

    def add(self, instance: str, member: str) -> None:
        """An instance just made: the names read before it (within the TTL) lack it, and a
        lab made again would be found at its old incarnation, on the lost member."""
        with self._lock:
            self._names[instance] = member

    def location(self, client: Client, instance: str) -> str | None:
        """The member holding `instance`, read now."""
        for inst in client.instances.all(recursion=1):
            if inst.name == instance:
                return getattr(inst, "location", None) or None
        return None
