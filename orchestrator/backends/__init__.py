"""Backends, imported lazily so that `guestlab --help` loads no engine SDK."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from orchestrator.errors import UsageError
from orchestrator.messages import _

if TYPE_CHECKING:
    from orchestrator.backends.contract import Backend

#: backend name -> "module:class"
REGISTRY: dict[str, str] = {
    "docker": "orchestrator.backends.docker:DockerBackend",
    "lxd": "orchestrator.backends.lxd:LxdBackend",
    "vagrant": "orchestrator.backends.vagrant:VagrantBackend",
    "nspawn": "orchestrator.backends.nspawn:NspawnBackend",
}

_cache: dict[str, Backend] = {}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Backend:
    """The backend called `name`, created once per process."""
    if name not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise UsageError(
            _("unknown backend `{name}` (known: {known})").format(name=name, known=known)
        )
    if name not in _cache:
        module, cls = REGISTRY[name].split(":")
        _cache[name] = getattr(importlib.import_module(module), cls)()
    return _cache[name]


def require_available(backend: Backend) -> None:
    """Raise BackendUnavailable, with the fix, when the engine cannot be used now."""
    from orchestrator.backends.common import raise_unless_usable

    raise_unless_usable(backend.name, backend.availability())
