"""The base images: `image list`, `build`, `import` and `rm`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape

from orchestrator import backends
from orchestrator.backends import require_available
from orchestrator.backends.contract import ImageRemoval, ImageStore
from orchestrator.cli import options
from orchestrator.cli.console import ConsoleReporter, out
from orchestrator.errors import GuestlabError

#: the engines a root file system serves (a VM boots from a disk with a kernel)
ROOTFS_BACKENDS = ("docker", "lxd", "nspawn")
ALL_BACKENDS = (*ROOTFS_BACKENDS, "vagrant")
F = TypeVar("F", bound=Callable[..., Any])


def _targets(help_text: str) -> Callable[[F], F]:
    """`--backend B` (repeatable): the engines a command acts on."""
    return click.option(
        "--backend", "targets", multiple=True, type=click.Choice(ALL_BACKENDS), help=help_text
    )


@click.group()
def image() -> None:
    """Build, import, list and remove the base images that scenarios name (no container
    hub needed)."""


@image.command("list")
def image_list() -> None:
    """List built-in and imported images: distribution, the kept file's size (a root file
    system tarball, or an imported VM disk's box), and which engines hold each now."""
    from rich.table import Table

    from orchestrator.images.box import box_path
    from orchestrator.images.catalog import CATALOG
    from orchestrator.images.imported import imported
    from orchestrator.images.rootfs import tarball_path

    table = Table(title="Images", title_justify="left")
    table.add_column("image", no_wrap=True)  # a name is what one types: never cut it
    for col in ("from", "os", "file", *backends.names()):
        table.add_column(col, overflow="fold")
    # one read of the record: an image removed meanwhile is listed as it was, not an error
    found = imported()
    for img in [*CATALOG.values(), *(found[n].definition() for n in sorted(found))]:
        name = img.name
        kept = box_path(name) if img.vm_disk else tarball_path(name)
        cached = f"{kept.stat().st_size / 1e6:.0f} MB" if kept.exists() else "not built"
        origin = ("imported box" if img.vm_disk else "imported") if img.imported else "built-in"
        distro = f"{img.os_id} {img.suite}".strip()
        holders = [_has(b, name) for b in backends.names()]
        table.add_row(escape(name), origin, escape(distro), cached, *holders)
    out.print(table)


@image.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_targets(
    "Also put it into this engine now (repeatable); otherwise each engine takes it"
    " the first time a lab asks."
)
def image_import(name: str, file: Path, targets: tuple[str, ...]) -> None:
    """Import FILE as the image NAME: a root file system tarball (.tar, .tar.gz, .tar.xz)
    for docker, lxd and nspawn, or a Vagrant .box (libvirt) or qcow2 disk for VMs.

    The file is checked first. A tarball: members inside the root, device nodes only in
    /dev, no link escaping it. A disk: a lone qcow2 (no backing file) of at most 32 GiB
    whose metadata qemu-img finds whole. Both: an init system, an os-release, this host's
    architecture. Scenarios then name it as `image: NAME`; `{{ machines.M.os }}` is its
    distribution's ID. Importing a name again replaces the image everywhere.
    """
    from orchestrator.images.imported import import_disk, import_rootfs, kind_of

    reporter = ConsoleReporter(out)
    disk = kind_of(file) != "rootfs"
    serves = ("vagrant",) if disk else ROOTFS_BACKENDS
    wrong = [t for t in targets if t not in serves]
    if wrong:
        raise GuestlabError(
            f"{file.name} is a {'VM disk' if disk else 'root file system'}: it serves"
            f" {', '.join(serves)}, not {', '.join(wrong)}"
        )
    _drop_from_engines(name, ALL_BACKENDS)  # a stale copy would shadow the new file
    with reporter.step(f"import {file.name} as {name}"):
        record = (import_disk if disk else import_rootfs)(name, file, reporter.line)
    for backend in targets:
        engine = backends.get(backend)
        require_available(engine)
        with reporter.step(f"into {backend}"):
            engine.ensure_image(name, reporter.line)
    facts = record.facts
    out.print(
        f"Image {escape(name)}: {escape(facts.pretty)}, {facts.arch}, init {facts.init},"
        f" {facts.size / 1e6:.0f} MB. Scenarios use it as `image: {escape(name)}`"
        + (" on `kind: vm` machines." if disk else ".")
    )


@image.command("rm")
@click.argument("name")
@_targets(
    "Remove it from this engine only (repeatable); otherwise from every engine and,"
    " for an imported image, from guestlab's image store."
)
def image_rm(name: str, targets: tuple[str, ...]) -> None:
    """Remove an image from the engines (and an imported one from the image store).

    Machines already made from it keep running. A built-in image is built again the next
    time a lab needs it.
    """
    from orchestrator.images.catalog import lookup
    from orchestrator.images.imported import forget

    img = lookup(name)
    removed = _drop_from_engines(name, targets or ALL_BACKENDS)
    if not targets and img.imported and forget(name):
        removed.append("the image store")
    where = ", ".join(removed) or "nowhere (no engine held it)"
    out.print(f"Removed {escape(name)} from {where}.")


def _drop_from_engines(name: str, names: tuple[str, ...]) -> list[str]:
    """Remove `name` from every usable engine among `names`; the engines that held it."""
    removed = []
    for backend_name in names:
        try:
            engine = backends.get(backend_name)
            usable = engine.availability().usable
        except ImportError:
            continue
        if usable and isinstance(engine, ImageRemoval) and engine.remove_image(name):
            removed.append(backend_name)
    return removed


def _has(backend_name: str, image_name: str) -> str:
    """Whether an engine holds the image: yes, no, or - (engine unusable or not asked)."""
    try:
        backend = backends.get(backend_name)
        usable = backend.availability().usable
        if not usable or not isinstance(backend, ImageStore):
            return "-"
        return "yes" if backend.has_image(image_name) else "no"
    except (GuestlabError, ImportError):
        return "-"


@image.command("build")
@click.argument("name")
@options.backend_option(None, default="docker")
@click.option(
    "--mirror",
    metavar="URL",
    help="Debian mirror (default: $GUESTLAB_MIRROR, else this host's apt sources).",
)
@click.option(
    "--rebuild", is_flag=True, help="Build the root filesystem again even if it is cached."
)
def image_build(name: str, backend: str, mirror: str | None, rebuild: bool) -> None:
    """Build a catalog image from Debian packages with debootstrap and import it."""
    from orchestrator.images.catalog import lookup
    from orchestrator.images.rootfs import ensure_tarball

    lookup(name)
    engine = backends.get(backend)
    require_available(engine)
    reporter = ConsoleReporter(out)
    with reporter.step(f"root filesystem of {name}"):
        tar = ensure_tarball(name, mirror=mirror, progress=reporter.line, rebuild=rebuild)
    with reporter.step(f"import into {backend}"):
        if rebuild and isinstance(engine, ImageStore):
            engine.import_image(name, tar, reporter.line)
        else:
            engine.ensure_image(name, reporter.line)
    out.print(f"Image {name} is ready on {backend}.")


#: the commands this module adds to `guestlab`
COMMANDS = (image,)
