"""The base images: `image list` and `image build`."""

from __future__ import annotations

import click

from orchestrator import backends
from orchestrator.backends.contract import ImageStore
from orchestrator.cli import options
from orchestrator.cli.console import ConsoleReporter, out
from orchestrator.errors import GuestlabError


@click.group()
def image() -> None:
    """Build and list the base images that scenarios name (no container hub needed)."""


@image.command("list")
def image_list() -> None:
    """List catalog images, the cached root filesystem, and which engines have each."""
    from rich.table import Table

    from orchestrator.images.catalog import CATALOG
    from orchestrator.images.rootfs import tarball_path

    table = Table(title="Images", title_justify="left")
    for col in ("image", "description", "root filesystem", *backends.names()):
        table.add_column(col)
    for name, img in CATALOG.items():
        tar = tarball_path(name)
        cached = f"{tar.stat().st_size / 1e6:.0f} MB" if tar.exists() else "not built"
        table.add_row(name, img.description, cached, *[_has(b, name) for b in backends.names()])
    out.print(table)


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
    from orchestrator.backends import require_available
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
