"""LXD backend: a module per concern (instance config, reaching LXD, bounded exec over
websockets, the LXD host's processes and locks, images, removal) behind LxdBackend."""

from orchestrator.backends.lxd.backend import LxdBackend
from orchestrator.backends.lxd.config import image_alias, instance_name

__all__ = ["LxdBackend", "image_alias", "instance_name"]
