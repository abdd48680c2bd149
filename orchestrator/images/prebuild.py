"""Build the root file systems the library needs before any engine is installed.

A tarball needs only debootstrap and a mirror, so the set-up starts this right after
guestlab's own install and lets it run while the engines' packages go in; the images
step that follows imports what is ready and waits on the lock of what is not.
`python -m orchestrator.images.prebuild` prints one line per tarball and exits 1 if any
failed (the images step then says why, as it builds that one again).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.errors import GuestlabError
from orchestrator.images.catalog import lookup
from orchestrator.images.needed import VM_BACKEND, library_needs
from orchestrator.images.rootfs import ensure_tarball

#: builds at once: debootstrap and apt download, unpack and run package scripts, so a
#: few overlap well on two cores; derived images wait on their base's lock anyway
WORKERS = 4


def wanted() -> list[str]:
    """The catalog images to build: the debootstrapped bases first, each at once, then the
    derived ones; within each, those of the VM boxes first (the images step's longest
    chain)."""
    needs = library_needs()
    names = [n for n in set().union(*needs.values()) if not lookup(n).imported]
    vm = needs.get(VM_BACKEND, set())
    return sorted(
        (n for n in names if not lookup(n).vm_disk),
        key=lambda n: (bool(lookup(n).base), n not in vm, n),
    )


def build(name: str) -> str:
    started = time.monotonic()
    try:
        ensure_tarball(name)
    except GuestlabError as exc:
        return f"rootfs: {name} failed: {exc}"
    return f"rootfs: {name} ready in {time.monotonic() - started:.0f} s"


def main() -> int:
    with ThreadPoolExecutor(WORKERS) as pool:
        lines = list(pool.map(build, wanted()))
    for line in lines:
        print(line)
    return 1 if any(" failed: " in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
