"""Docker backend: a module per concern (engine facts and names, confinement, cgroups,
the host firewall, bounded exec, resources by label) behind DockerBackend."""

from orchestrator.backends.docker.backend import DockerBackend
from orchestrator.backends.docker.engine import container_name, image_ref, network_name

__all__ = ["DockerBackend", "container_name", "image_ref", "network_name"]
