"""Which images the scenario library needs on which backend, for a set-up that builds each
once, before any lab or test asks for it.

`python -m orchestrator.images.needed` prints one `BACKEND IMAGE` pair a line.
"""

from __future__ import annotations

from orchestrator.images.catalog import DEFAULT_IMAGE
from orchestrator.scenario.catalog import discover
from orchestrator.scenario.load import load_file

VM_BACKEND = "vagrant"
#: releases a lab is proven on through `image import` (tests/integration/test_image_import.py)
PROOF_RELEASES = ("debian-11-systemd", "debian-13-systemd")


def library_needs() -> dict[str, set[str]]:
    """backend -> images its library labs use (a `kind: vm` machine's go to vagrant)."""
    needs: dict[str, set[str]] = {}
    for path in discover():
        scenario = load_file(path)
        for backend in scenario.backends:
            for m in scenario.machines:
                root = scenario.root_of(m.name)
                image = root.image or DEFAULT_IMAGE
                where = VM_BACKEND if root.kind == "vm" else backend
                needs.setdefault(where, set()).add(image)
    # the backend contract tests run the default image on every engine
    for backend in ("docker", "lxd", "nspawn", VM_BACKEND):
        needs.setdefault(backend, set()).add(DEFAULT_IMAGE)
    # the image-import tests import other releases' root file systems as files
    needs["nspawn"] |= set(PROOF_RELEASES)
    return needs


if __name__ == "__main__":
    for backend, images in sorted(library_needs().items()):
        for image in sorted(images):
            print(backend, image)
