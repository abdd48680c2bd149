"""Where each student's lab is on an LXD cluster, and whether its member answers.

LXD places labs; guestlab passes on a wanted member (`lxd_target` in the roster:
`orchestrator.lab.placement`) and reads back where each lab is, which members are
offline and how much memory each one has free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.backends.contract import Backend, LabRef, Members

if TYPE_CHECKING:
    from orchestrator.lab import Lab
    from orchestrator.state import Store


def where(backend: Backend, refs: Sequence[LabRef], machines: Sequence[str]) -> dict[str, str]:
    """Lab key -> its member on an LXD cluster, `(offline)` added when it does not answer;
    empty where the backend is not an LXD cluster or cannot be asked."""
    if not isinstance(backend, Members):
        return {}
    try:
        labs = backend.placement([(ref, machines) for ref in refs])
        offline = backend.offline_members() if labs else set()
    except Exception:
        return {}
    return {key: m + (" (offline)" if m in offline else "") for key, m in labs.items()}


def memory_by_member(backend: Backend) -> dict[str, int]:
    """Bytes free on each online member of an LXD cluster; empty elsewhere."""
    if not isinstance(backend, Members):
        return {}
    try:
        return backend.memory_by_member()
    except Exception:
        return {}


def lost_member(lab: Lab) -> str | None:
    """The offline LXD cluster member holding this lab's machines, if any."""
    backend = lab.backend
    found = where(backend, [lab.ref], [s.name for s in lab.specs]).get(lab.ref.key, "")
    return found.removesuffix(" (offline)") if found.endswith(" (offline)") else None


def forget_lost(lab: Lab, store: Store) -> None:
    """A student's lab (made for them or claimed from a pool) whose member is offline is
    marked failed, so that `up` makes it again on the others: its grades stay, and what is
    left on that member goes with `class down` or `gc` once it is back."""
    record = store.lab_of(lab.ref)
    if record is not None and lost_member(replace(lab, ref=record.ref)):
        store.set_status(record.key, "failed", "member lost")


def fits_by_member(backend: Backend, where: str, per_lab: int) -> str:
    """`where` with, on an LXD cluster, each member's free memory and the labs it fits."""
    from orchestrator.classroom.capacity import fmt_bytes as size

    by_member = memory_by_member(backend)
    if not by_member or not per_lab:
        return where
    each = ", ".join(f"{m} {size(b)}: {b // per_lab} lab(s)" for m, b in sorted(by_member.items()))
    return f"{where} ({each})"
