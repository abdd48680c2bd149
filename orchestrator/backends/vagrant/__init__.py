"""Vagrant backend: real virtual machines (libvirt, VirtualBox) or, flagged as such,
containers (Vagrant's docker provider), behind VagrantBackend."""

from orchestrator.backends.vagrant.backend import VagrantBackend

__all__ = ["VagrantBackend"]
