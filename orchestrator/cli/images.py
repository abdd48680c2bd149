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
from orchestrator.cli.localized import Path as PathType
from orchestrator.cli.localized import group
from orchestrator.errors import GuestlabError
from orchestrator.messages import N_, _

#: the engines a root file system serves (a VM boots from a disk with a kernel)
ROOTFS_BACKENDS = ("docker", "lxd", "nspawn")
ALL_BACKENDS = (*ROOTFS_BACKENDS, "vagrant")
F = TypeVar("F", bound=Callable[..., Any])


def _targets(help_text: str) -> Callable[[F], F]:
    """`--backend B` (repeatable): the engines a command acts on (`help_text` marked with
    `N_` where it is written)."""
    return click.option(
        "--backend", "targets", multiple=True, type=click.Choice(ALL_BACKENDS), help=help_text
    )


@group(
    help=N_(
        "Build, import, list and remove the base images that scenarios name (no container"
        " hub needed)."
    )
)
def image() -> None:
    pass


@image.command(
    "list",
    help=N_(
        "List built-in and imported images: distribution, the kept file's size (a root file"
        " system tarball, or an imported VM disk's box), and which engines hold each now."
    ),
)
def image_list() -> None:
    from rich.table import Table

    from orchestrator.images.box import box_path
    from orchestrator.images.catalog import CATALOG
    from orchestrator.images.imported import imported
    from orchestrator.images.rootfs import tarball_path

    table = Table(title=_("Images"), title_justify="left")
    table.add_column(_("image"), no_wrap=True)  # a name is what one types: never cut it
    for col in (_("from"), _("os"), _("file"), *backends.names()):
        table.add_column(col, overflow="fold")
    # one read of the record: an image removed meanwhile is listed as it was, not an error
    found = imported()
    for img in [*CATALOG.values(), *(found[n].definition() for n in sorted(found))]:
        name = img.name
        kept = box_path(name) if img.vm_disk else tarball_path(name)
        cached = f"{kept.stat().st_size / 1e6:.0f} MB" if kept.exists() else _("not built")
        origin = (
            (_("imported box") if img.vm_disk else _("imported")) if img.imported else _("built-in")
        )
        distro = f"{img.os_id} {img.suite}".strip()
        holders = [_has(b, name) for b in backends.names()]
        table.add_row(escape(name), origin, escape(distro), cached, *holders)
    out.print(table)


@image.command(
    "import",
    help=N_(
        "Import FILE as the image NAME: a root file system tarball (.tar, .tar.gz, .tar.xz)"
        " for docker, lxd and nspawn, or a Vagrant .box (libvirt) or qcow2 disk for VMs.\n\n"
        "The file is checked first. A tarball: members inside the root, device nodes only in"
        " /dev, no link escaping it. A disk: a lone qcow2 (no backing file) of at most 32 GiB"
        " whose metadata qemu-img finds whole. Both: an init system, an os-release, this host's"
        " architecture. Scenarios then name it as `image: NAME`; `{{ machines.M.os }}` is its"
        " distribution's ID. Importing a name again replaces the image everywhere."
    ),
)
@click.argument("name")
@click.argument("file", type=PathType(exists=True, dir_okay=False, path_type=Path))
@_targets(
    N_(
        "Also put it into this engine now (repeatable); otherwise each engine takes it"
        " the first time a lab asks."
    )
)
def image_import(name: str, file: Path, targets: tuple[str, ...]) -> None:
    from orchestrator.images.imported import import_disk, import_rootfs, kind_of

    reporter = ConsoleReporter(out)
    disk = kind_of(file) != "rootfs"
    serves = ("vagrant",) if disk else ROOTFS_BACKENDS
    wrong = [t for t in targets if t not in serves]
    if wrong:
        serves_wrong = {"file": file.name, "serves": ", ".join(serves), "wrong": ", ".join(wrong)}
        raise GuestlabError(
            (
                _("{file} is a VM disk: it serves {serves}, not {wrong}")
                if disk
                else _("{file} is a root file system: it serves {serves}, not {wrong}")
            ).format(**serves_wrong)
        )
    _drop_from_engines(name, ALL_BACKENDS)  # a stale copy would shadow the new file
    with reporter.step(_("import {file} as {name}").format(file=file.name, name=name)):
        record = (import_disk if disk else import_rootfs)(name, file, reporter.line)
    for backend in targets:
        engine = backends.get(backend)
        require_available(engine)
        with reporter.step(_("into {backend}").format(backend=backend)):
            engine.ensure_image(name, reporter.line)
    facts = record.facts
    said = {
        "name": escape(name),
        "system": escape(facts.pretty),
        "arch": facts.arch,
        "init": facts.init,
        "size": f"{facts.size / 1e6:.0f}",
    }
    out.print(
        (
            _(
                "Image {name}: {system}, {arch}, init {init}, {size} MB. Scenarios use it as"
                " `image: {name}` on `kind: vm` machines."
            )
            if disk
            else _(
                "Image {name}: {system}, {arch}, init {init}, {size} MB. Scenarios use it as"
                " `image: {name}`."
            )
        ).format(**said)
    )


@image.command(
    "rm",
    help=N_(
        "Remove an image from the engines (and an imported one from the image store).\n\n"
        "Machines already made from it keep running. A built-in image is built again the next"
        " time a lab needs it."
    ),
)
@click.argument("name")
@_targets(
    N_(
        "Remove it from this engine only (repeatable); otherwise from every engine and,"
        " for an imported image, from guestlab's image store."
    )
)
def image_rm(name: str, targets: tuple[str, ...]) -> None:
    from orchestrator.images.catalog import lookup
    from orchestrator.images.imported import forget

    img = lookup(name)
    removed = _drop_from_engines(name, targets or ALL_BACKENDS)
    if not targets and img.imported and forget(name):
        removed.append(_("the image store"))
    if removed:
        done = _("Removed {name} from {where}.").format(
            name=escape(name), where=escape(", ".join(removed))
        )
    else:
        done = _("{name} was in no engine: nothing to remove.").format(name=escape(name))
    out.print(done)


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
        return _("yes") if backend.has_image(image_name) else _("no")
    except (GuestlabError, ImportError):
        return "-"


@image.command(
    "build",
    help=N_("Build a catalog image from Debian packages with debootstrap and import it."),
)
@click.argument("name")
@options.backend_option(N_("Engine to import the image into."), default="docker")
@click.option(
    "--mirror",
    metavar="URL",
    help=N_("Debian mirror (default: $GUESTLAB_MIRROR, else this host's apt sources)."),
)
@click.option(
    "--rebuild", is_flag=True, help=N_("Build the root filesystem again even if it is cached.")
)
def image_build(name: str, backend: str, mirror: str | None, rebuild: bool) -> None:
    from orchestrator.images.catalog import lookup
    from orchestrator.images.rootfs import ensure_tarball

    lookup(name)
    engine = backends.get(backend)
    require_available(engine)
    reporter = ConsoleReporter(out)
    with reporter.step(_("root filesystem of {name}").format(name=name)):
        tar = ensure_tarball(name, mirror=mirror, progress=reporter.line, rebuild=rebuild)
    with reporter.step(_("import into {backend}").format(backend=backend)):
        if rebuild and isinstance(engine, ImageStore):
            engine.import_image(name, tar, reporter.line)
        else:
            engine.ensure_image(name, reporter.line)
    ready = _("Image {name} is ready on {backend}.").format(name=escape(name), backend=backend)
    out.print(ready)


#: the commands this module adds to `guestlab`
COMMANDS = (image,)
