"""Find the Debian mirror this host already uses, so that no mirror is hard-coded."""

from __future__ import annotations

import os
import re
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.messages import _

APT = Path("/etc/apt")


def _deb822_entries(text: str) -> list[tuple[list[str], list[str]]]:
    entries = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    return entries


def _one_line_entries(text: str) -> list[tuple[list[str], list[str]]]:
    entries = []
    for line in text.splitlines():
        parts = re.sub(r"\[[^\]]*\]", "", line).split()
        if len(parts) >= 3 and parts[0] == "deb":
            entries.append(([parts[1]], [parts[2]]))
    return entries


def host_mirror(apt_dir: Path = APT) -> str | None:
    """The first Debian archive URI in the host's apt sources (not a security one)."""
    entries: list[tuple[list[str], list[str]]] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            entries += _deb822_entries(text)
        elif f.suffix == ".list" or f.name == "sources.list":
            entries += _one_line_entries(text)
    for uris, suites in entries:
        debian = [s for s in suites if not s.endswith("-security") and "/" not in s]
        if any(s in debian for s in ("bookworm", "trixie", "stable", "bullseye")):
            for uri in uris:
                if uri.startswith(("http://", "https://", "file:")):
                    return uri
    return None


def choose_mirror(option: str | None = None) -> str:
    """--mirror, else $GUESTLAB_MIRROR, else the host's apt configuration."""
    found = option or os.environ.get("GUESTLAB_MIRROR") or host_mirror()
    if not found:
        raise UsageError(
            _("no Debian mirror found in this host's apt sources"),
            hint=_("pass --mirror URL (a Debian archive) or set GUESTLAB_MIRROR"),
        )
    return found
