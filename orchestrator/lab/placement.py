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


def place(backends: Sequence[Backend], ref: LabRef, member: str | None) -> None:
    """Ask for the lab's machines on cluster member `member` (None: the engine's choice)."""
    placeable = [b for b in backends if isinstance(b, Members)]
    if member:
        require_cluster(placeable)
    for backend in placeable:
        backend.place(ref, member)


def require_cluster(backends: Sequence[Backend]) -> None:
    """UsageError unless one of these backends is a cluster (a member to place labs on)."""
    if not any(isinstance(b, Members) and b.clustered() for b in backends):
        raise UsageError(
            _("--lxd-target (or a roster's lxd_target) places labs on an LXD cluster member"),
            hint=_("use --backend lxd with GUESTLAB_LXD_ENDPOINT at a member of the cluster"),
        )
