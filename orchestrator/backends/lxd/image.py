"""Catalog images in LXD: a locally built root file system imported as a split image."""

from __future__ import annotations

import io
import platform
import tarfile
import time
from typing import TYPE_CHECKING

from orchestrator.backends.common import build_once, lock_path
from orchestrator.backends.contract import Progress
from orchestrator.backends.lxd.config import image_alias
from orchestrator.backends.lxd.machines import api_errors
from orchestrator.errors import UsageError
from orchestrator.messages import _

if TYPE_CHECKING:
    from pylxd import Client


def ensure_image(client: Client, image: str, progress: Progress, *, build: bool = True) -> None:
    """Make the catalog image usable in LXD, building and importing it when missing."""
    from orchestrator.images.catalog import lookup
    from orchestrator.images.rootfs import ensure_tarball

    alias = image_alias(image)

    def present() -> bool:
        return bool(client.images.exists(alias, alias=True))

    if present():
        return
    definition = lookup(image)
    if not build:
        raise UsageError(
            _(
                "image `{image}` is not in LXD yet (alias {alias}): build it with"
                " `guestlab image build {image} --backend lxd`"
            ).format(image=image, alias=alias),
            hint=f"guestlab image build {image} --backend lxd",
        )

    def build_it() -> None:
        tarball = ensure_tarball(image, progress=progress)
        progress(_("importing {name} into LXD as {alias}").format(name=tarball.name, alias=alias))
        meta = metadata_tarball(image, definition.description, definition.suite, definition.os_id)
        with (
            api_errors(_("import image {alias}").format(alias=alias)),
            open(tarball, "rb") as rootfs,
        ):
            # a split image: LXD reads a plain (uncompressed) tar rootfs as well
            img = client.images.create(rootfs, metadata=meta, public=False, wait=True)
            try:
                img.add_alias(alias, definition.description)
            except Exception:
                img.delete(wait=True)  # no orphan image without its alias
                raise

    # two imports of one image wait for each other
    build_once(lock_path(f"lxd-image-{image}"), present, build_it)


def metadata_tarball(image: str, description: str, release: str, os_id: str = "debian") -> bytes:
    """The metadata half of a split LXD image: just metadata.yaml, no templates.

    Without templates LXD never rewrites /etc/hostname, so the hostname guestlab pushes
    is the one the machine boots with.
    """
    arch = platform.machine() or "x86_64"  # built here, or checked to be this host's at import
    metadata = {
        "architecture": arch,
        "creation_date": int(time.time()),
        "properties": {
            "description": description,
            "os": os_id,
            "release": release,
            "guestlab.image": image,
        },
    }
    import yaml  # here: only building an image needs it, every LXD command imports this

    body = yaml.safe_dump(metadata, sort_keys=False).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(body)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def remove_image(client: Client, image: str) -> bool:
    """Delete the LXD image behind `image`'s alias; instances made from it keep running."""
    alias = image_alias(image)
    if not client.images.exists(alias, alias=True):
        return False
    with api_errors(_("delete image {alias}").format(alias=alias)):
        client.images.get_by_alias(alias).delete(wait=True)
    return True
