"""Logical images that scenarios name, and how to build each from Debian packages."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import UsageError
from orchestrator.messages import _


@dataclass(frozen=True)
class ImageDef:
    name: str
    description: str
    suite: str
    packages: tuple[str, ...]
    variant: str = "minbase"
    os_id: str = "debian"  # the ID of its os-release: `{{ machines.NAME.os }}`
    imported: bool = False  # from `guestlab image import`: no recipe, only its file
    vm_disk: bool = False  # an imported box: serves the vagrant backend only
    #: the catalog image whose tree this one starts from (its packages added with apt in a
    #: chroot: one debootstrap for all of a release's images); None: debootstrap it
    base: str | None = None


#: the image of a machine whose scenario names none
DEFAULT_IMAGE = "debian-12-systemd"

BASE = ("systemd", "systemd-sysv", "dbus", "iproute2", "procps")

CATALOG: dict[str, ImageDef] = {
    "debian-12-systemd": ImageDef(
        name="debian-12-systemd",
        description="Debian 12 (bookworm) with systemd, dbus, iproute2 and procps",
        suite="bookworm",
        packages=BASE,
    ),
    # other Debian releases: the proof that a scenario runs on a distribution it was not
    # written on, and the path an imported image takes (build, export, import)
    "debian-11-systemd": ImageDef(
        name="debian-11-systemd",
        description="Debian 11 (bullseye) with systemd, dbus, iproute2 and procps",
        suite="bullseye",
        packages=BASE,
    ),
    "debian-13-systemd": ImageDef(
        name="debian-13-systemd",
        description="Debian 13 (trixie) with systemd, dbus, iproute2 and procps",
        suite="trixie",
        packages=BASE,
    ),
    # The 102.6 lab library: every tool a lab needs is in its image, because lab machines
    # have no network to install anything at run time.
    "debian-12-lab": ImageDef(
        name="debian-12-lab",
        description="debian-12-systemd plus OpenSSH server, dmidecode, lshw, pciutils, kmod",
        suite="bookworm",
        base=DEFAULT_IMAGE,
        packages=(*BASE, "openssh-server", "dmidecode", "lshw", "pciutils", "kmod", "less"),
    ),
    "debian-12-cloud": ImageDef(
        name="debian-12-cloud",
        description="debian-12-systemd plus cloud-init (NoCloud) and OpenSSH server",
        suite="bookworm",
        base=DEFAULT_IMAGE,
        packages=(
            *BASE,
            "cloud-init",
            "python3-jsonschema",
            "python3-cffi-backend",
            "openssh-server",
            "sudo",
            "less",
        ),
    ),
    "debian-12-nspawn": ImageDef(
        name="debian-12-nspawn",
        description="debian-12-systemd plus systemd-container (systemd-nspawn, machinectl)"
        " and busybox-static for small guest root filesystems",
        suite="bookworm",
        base=DEFAULT_IMAGE,
        packages=(*BASE, "systemd-container", "busybox-static", "less"),
    ),
    "debian-12-docker": ImageDef(
        name="debian-12-docker",
        description="debian-12-systemd plus the Docker engine (docker.io) and busybox-static"
        " to build a local image from",
        suite="bookworm",
        base=DEFAULT_IMAGE,
        packages=(*BASE, "docker.io", "busybox-static", "less"),
    ),
    "debian-12-lxd": ImageDef(
        name="debian-12-lxd",
        description="debian-12-systemd plus LXD (lxd, lxc) and busybox-static to build a"
        " local image from",
        suite="bookworm",
        base=DEFAULT_IMAGE,
        packages=(*BASE, "lxd", "busybox-static", "less"),
    ),
}


def lookup(name: str) -> ImageDef:
    """A catalog image, else one imported with `guestlab image import`."""
    if name in CATALOG:
        return CATALOG[name]
    from orchestrator.images.imported import imported  # its archive readers: only here

    found = imported()
    if name not in found:
        known = ", ".join([*CATALOG, *found])
        raise UsageError(
            _("unknown image `{name}` (known: {known})").format(name=name, known=known),
            hint=_("`guestlab image list` shows them; `guestlab image import` adds your own"),
        )
    return found[name].definition()
