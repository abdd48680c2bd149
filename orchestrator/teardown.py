"""Taking labs down: `down` of one lab and garbage collection of labs nobody knows.

Apart from the lifecycle on purpose: removing a lab needs the state store and the
backends, not the scenario, so `guestlab down` skips loading the format (pydantic,
Jinja2), about a tenth of a second of a command that is otherwise mostly the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator import backends
from orchestrator.backends import require_available
from orchestrator.backends.contract import FoundResources, LabRef
from orchestrator.credentials import Seats
from orchestrator.pool.records import PoolStore
from orchestrator.state import Store, lab_lock


def down(ref: LabRef, backend_names: Sequence[str], store: Store) -> dict[str, FoundResources]:
    """Remove everything of a lab on the given backends and forget it; idempotent.

    `ref` may name the student's lab (LabRef.owner): a lab claimed from a pool is found
    through the state store under the key its resources carry.
    """
    record = store.lab_of(ref)
    ref = record.ref if record else ref
    removed: dict[str, FoundResources] = {}
    with lab_lock(ref.key):
        for name in backend_names:
            backend = backends.get(name)
            require_available(backend)
            found = backend.destroy(ref)
            if found:
                removed[name] = found
        store.delete_lab(ref.key)
        Seats(store.db).forget(ref.key)  # a later `up` gets a new secret
        store.event(ref.key, "down")
    return removed


def gc(store: Store) -> dict[str, dict[str, FoundResources]]:
    """Remove resources of labs that the state store does not know (its labs and its pools'),
    on every usable backend."""
    known = {r.key for r in store.labs()} | {p.key for p in PoolStore(store.db).labs()}
    removed: dict[str, dict[str, FoundResources]] = {}
    for name in backends.names():
        backend = backends.get(name)
        if not backend.availability().usable:
            continue
        for key, found in backend.find().items():
            if key in known:
                continue
            scenario, _, student = key.partition("--")
            backend.destroy(LabRef(scenario, student))
            removed.setdefault(name, {})[key] = found
    return removed
