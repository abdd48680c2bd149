"""A machine's image as Vagrant wants it: guestlab's box for libvirt, built once under a
lock and put into libvirt's pool; a box the user added for VirtualBox; the docker backend's
image for the docker provider (no box).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import file_lock, lock_path
from orchestrator.backends.contract import Progress
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.docker_provider import docker_backend
from orchestrator.backends.vagrant.host import box_dir, run_host
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.errors import UsageError
from orchestrator.images.manifest import Manifest
from orchestrator.messages import _


def has_image(image: str, provider: str) -> bool:
    """Whether `provider` has what a machine of `image` boots from."""
    if provider == "docker":
        return docker_backend().has_image(image)
    return box_dir(image, provider) is not None


def ensure_image(
    image: str,
    progress: Progress,
    preflight: Preflight,
    *,
    build: bool = True,
    mirror: str | None = None,
) -> None:
    """The image ready for the provider, built (when `build`) or refused with the command."""
    from orchestrator.images.box import box_name, box_path, ensure_box_file
    from orchestrator.images.catalog import lookup

    definition = lookup(image)
    eng = preflight.engine()
    if definition.imported and not definition.vm_disk and eng.provider != "docker":
        raise UsageError(
            _(
                "`{image}` is an imported root file system: it serves docker, lxd and"
                " nspawn, and a VM boots from a disk with a kernel"
            ).format(image=image),
            hint=_("run the scenario with --backend docker, lxd or nspawn"),
        )
    if eng.provider == "docker":
        # no box: the docker provider runs the image the docker backend builds
        docker_backend().ensure_image(image, progress, build=build, mirror=mirror)
        return
    if eng.provider == "virtualbox":
        if box_dir(image, "virtualbox") is None:
            raise UsageError(
                _("no VirtualBox box {image}: guestlab builds libvirt boxes only").format(
                    image=box_name(image)
                ),
                hint=_("add one: vagrant box add {image} FILE --provider virtualbox").format(
                    image=box_name(image)
                ),
            )
        return
    # the box is built and uploaded once, whoever asks at the same time
    with file_lock(lock_path(f"guestlab-vagrant-box-{image}", paths.host_locks_dir())):
        if box_dir(image, "libvirt") is None:
            if not box_path(image).exists() and not build:
                raise UsageError(
                    _(
                        "the Vagrant box {image} does not exist yet: build it with `guestlab"
                        " image build {name} --backend vagrant`"
                    ).format(image=box_name(image), name=image),
                    hint=f"guestlab image build {image} --backend vagrant",
                )
            add_box(image, ensure_box_file(image, mirror=mirror, progress=progress))
        libvirt.upload_box(image, progress)


def import_image(image: str, progress: Progress) -> None:
    """`image build --rebuild`: build the box again from the fresh rootfs and add it."""
    from orchestrator.images.box import ensure_box_file

    add_box(image, ensure_box_file(image, progress=progress, rebuild=True))
    libvirt.upload_box(image, progress)


def add_box(image: str, box_file: Path) -> None:
    """`vagrant box add` the box file for libvirt, replacing one of the same name."""
    from orchestrator.images.box import box_name

    run_host(
        ["vagrant", "box", "add", "--force", "--name", box_name(image),
         "--provider", "libvirt", str(box_file)],
        timeout=600,
    )  # fmt: skip


def remove_image(image: str) -> bool:
    """Remove guestlab's box of `image` from Vagrant and its disk from libvirt's pool."""
    from orchestrator.images.box import box_name

    found = box_dir(image, "libvirt")
    if found is None:
        return False
    libvirt.remove_box_volume(image, found / "box.img")
    run_host(["vagrant", "box", "remove", "--force", "--all", box_name(image)], timeout=300)
    return True


def image_manifest(image: str, provider: str) -> Manifest | None:
    """What the binaries of a machine of `image` are when it starts, for tamper checks.

    The docker provider runs the docker backend's image, made from the rootfs tarball; a
    libvirt VM boots guestlab's box (the tarball plus a kernel and packages), or the box
    an instructor imported: the box file's manifest. A VirtualBox box is one the user
    added from elsewhere: no manifest describes it.
    """
    from orchestrator.images import boxmanifest, manifest
    from orchestrator.images.box import box_path

    if provider == "docker":
        return manifest.for_image(image)
    if provider == "libvirt":
        return boxmanifest.for_box(box_path(image))
    return None
