"""Where a lab's machines go on an engine whose members hold the labs (an LXD cluster).

The engine places labs; guestlab only passes on the member an instructor names
(`guestlab up --lxd-target`, a roster's `lxd_target`), and refuses the name where the
engine is no cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import Backend, LabRef, Members
from orchestrator.errors import UsageError
from orchestrator.messages import _


def place(backends: Sequence[Backend], ref: LabRef, member: str | None) -> str | None:
    """Ask for the lab's machines on cluster member `member` (None: the engine's choice).
    A member that is offline cannot take a lab: the engine chooses, and the sentence
    returned says so (a student pinned to a lost member gets a lab on another)."""
    placeable = [b for b in backends if isinstance(b, Members)]
    if member:
        require_cluster(placeable)
    note = None
    for backend in placeable:
        wanted = member
        if member and member in _offline(backend):
            wanted = None
            note = _("{member} is offline: the lab goes where LXD places it").format(member=member)
        backend.place(ref, wanted)
    return note


def _offline(backend: Members) -> set[str]:
    try:
        return backend.offline_members() if backend.clustered() else set()
    except Exception:  # a cluster that cannot say: the wanted member is tried, and says
        return set()


def require_cluster(backends: Sequence[Backend]) -> None:
    """UsageError unless one of these backends is a cluster (a member to place labs on)."""
    if not any(isinstance(b, Members) and b.clustered() for b in backends):
        raise UsageError(
            _("--lxd-target (or a roster's lxd_target) places labs on an LXD cluster member"),
            hint=_("use --backend lxd with GUESTLAB_LXD_ENDPOINT at a member of the cluster"),
        )
