"""Where each student's lab is on an LXD cluster: the instructor's choice, the member now.

LXD places labs; guestlab only passes on a wanted member (`lxd_target` in the roster,
`--lxd-target`) and reads back where each lab is and whether that member answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.backends.contract import Backend, LabRef
from orchestrator.errors import UsageError


def place(backends: list[Backend], ref: LabRef, member: str | None) -> None:
    """Ask for the lab's machines on cluster member `member` (None: LXD's choice)."""
    placeable = [b for b in backends if hasattr(b, "place")]
    if member and not placeable:
        raise UsageError(
            "--lxd-target (or a roster's lxd_target) places labs on an LXD cluster member",
            hint="use --backend lxd with GUESTLAB_LXD_ENDPOINT at a member of the cluster",
        )
    for backend in placeable:
        backend.place(ref, member)  # type: ignore[attr-defined]


def where(backend: Backend, refs: Sequence[LabRef], machines: Sequence[str]) -> dict[str, str]:
    """Lab key -> its member on an LXD cluster, `(offline)` added when it does not answer;
    empty where the backend is not an LXD cluster or cannot be asked."""
    if not hasattr(backend, "placement"):
        return {}
    try:
        asked = [(ref, machines) for ref in refs]
        labs: dict[str, str] = backend.placement(asked)  # type: ignore[attr-defined]
        states: dict[str, Any] = backend.members()  # type: ignore[attr-defined]
    except Exception:
        return {}
    offline = {name for name, m in states.items() if not m.online}
    return {key: m + (" (offline)" if m in offline else "") for key, m in labs.items()}


def memory_by_member(backend: Backend) -> dict[str, int]:
    """Bytes free on each online member of an LXD cluster; empty elsewhere."""
    if not hasattr(backend, "memory_by_member"):
        return {}
    try:
        return dict(backend.memory_by_member())
    except Exception:
        return {}


def lost_member(lab: Any) -> str | None:
    """The offline LXD cluster member holding this lab's machines, if any."""
    backend = lab.backend
    found = where(backend, [lab.ref], [s.name for s in lab.specs]).get(lab.ref.key, "")
    return found.removesuffix(" (offline)") if found.endswith(" (offline)") else None


def fits_by_member(backend: Backend, where: str, per_lab: int) -> str:
    """`where` with, on an LXD cluster, each member's free memory and the labs it fits."""
    from orchestrator.classroom.capacity import fmt_bytes as size

    by_member = memory_by_member(backend)
    if not by_member or not per_lab:
        return where
    each = ", ".join(f"{m} {size(b)}: {b // per_lab} lab(s)" for m, b in sorted(by_member.items()))
    return f"{where} ({each})"
