"""systemd-nspawn backend: a module per concern (the store of root filesystems, booting
and stopping, entering a machine, the host's processes and cgroups, the seccomp filter)
behind NspawnBackend."""

from orchestrator.backends.nspawn.backend import NspawnBackend
from orchestrator.backends.nspawn.machines import unit_name

__all__ = ["NspawnBackend", "unit_name"]
