"""Logical images that scenarios name, and how to build each from Debian packages."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import UsageError


@dataclass(frozen=True)
class ImageDef:
    name: str
    description: str
    suite: str
    packages: tuple[str, ...]
    variant: str = "minbase"


CATALOG: dict[str, ImageDef] = {
    "debian-12-systemd": ImageDef(
        name="debian-12-systemd",
        description="Debian 12 (bookworm) with systemd, dbus, iproute2 and procps",
        suite="bookworm",
        packages=("systemd", "systemd-sysv", "dbus", "iproute2", "procps"),
    ),
}


def lookup(name: str) -> ImageDef:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(CATALOG)
        raise UsageError(f"unknown image `{name}` (the catalog has: {known})") from None
