"""`guestlab serve`: the instructor's live dashboard and the students' seats, one process."""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import click
from rich.markup import escape

from orchestrator import textsafe
from orchestrator.cli import localized, options
from orchestrator.cli.console import err, out
from orchestrator.cli.localized import Path as PathType
from orchestrator.cli.localized import command
from orchestrator.errors import UsageError
from orchestrator.messages import N_, _

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
FILE = PathType(exists=True, dir_okay=False, path_type=Path)


@command(
    help=N_(
        "Serve the live dashboard and the students' seats (page, terminals, API).\n\n"
        "Open the dashboard URL printed at start: it carries a random token, needed by every"
        " instructor page (`?token=`, `Authorization: Bearer TOKEN` or `X-Guestlab-Token`)."
        " Students open their own link (`guestlab class links ID --base-url URL`), which opens"
        " their lab and nothing else. Stop it with Ctrl-C: every terminal ends with it."
    )
)
@click.option(
    "--host",
    metavar=N_("ADDRESS"),
    default="127.0.0.1",
    show_default=True,
    help=N_("Address to listen on."),
)
@click.option(
    "--port",
    type=localized.IntRange(0, 65535),
    metavar="N",
    default=8080,
    show_default=True,
    help=N_("0: any free."),
)
@click.option(
    "--ssh-port",
    type=localized.IntRange(0, 65535),
    metavar="N",
    help=N_("Also open the SSH door on this port."),
)
@click.option("--tls-cert", type=FILE, help=N_("Serve HTTPS with this certificate (PEM)."))
@click.option("--tls-key", type=FILE, help=N_("The certificate's private key (PEM)."))
@click.option(
    "--idle",
    type=localized.IntRange(1, 24 * 60),
    metavar="N",
    default=30,
    show_default=True,
    help=N_("Minutes without a keystroke before a terminal closes."),
)
@click.option(
    "--max-terminals",
    type=localized.IntRange(1, 64),
    metavar="N",
    default=4,
    show_default=True,
    help=N_("Open web terminals per student."),
)
@click.option("--access-log", is_flag=True, help=N_("Print each request on stderr."))
def serve(
    host: str,
    port: int,
    ssh_port: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    idle: int,
    max_terminals: int,
    access_log: bool,
) -> None:
    from orchestrator.classroom.store import ClassStore, list_classes
    from orchestrator.credentials import Seats
    from orchestrator.web import server
    from orchestrator.web.config import ServeConfig

    if (tls_cert is None) != (tls_key is None):
        raise UsageError(_("--tls-cert and --tls-key go together"))
    store = options.store()
    ClassStore(store.db)  # the tables exist before the read-only connections look for them
    Seats(store.db)
    classes = [c.id for c in list_classes(store.db)]
    path = store.path
    store.close()

    def log(line: str) -> None:
        if access_log:
            err.print(f"[dim]{textsafe.markup(line)}[/]")

    config = ServeConfig(db_path=path, idle=idle * 60.0, max_terminals=max_terminals, log=log)
    listen = server.Listen(host, port, tls_cert, tls_key, ssh_port, access_log)
    sock = server.bind(host, port)
    base = server.url(sock, tls_cert is not None)
    # click.echo: a URL must not be wrapped at the terminal's width
    click.echo(_("Dashboard: {url}").format(url=f"{base}?token={config.token}"))
    for cid in classes:
        url = f"{base}class/{urllib.parse.quote(cid)}?token={config.token}"
        click.echo("  " + _("class {id}: {url}").format(id=cid, url=url))
    links = f"guestlab class links ID --base-url {base.rstrip('/')}"
    click.echo(_("Seats: {url} ({links})").format(url=f"{base}s/TOKEN", links=links))
    if ssh_port is not None:
        click.echo(_("SSH door: port {port}").format(port=ssh_port))
    if host not in LOCAL_HOSTS and tls_cert is None:
        warning = _(
            "listening on {host} over plain HTTP: tokens, grades and terminals cross the"
            " network in clear; use --tls-cert and --tls-key"
        ).format(host=escape(host))
        label = _("warning:")
        err.print(f"[yellow]{label}[/] {warning}")
    stops = _("Ctrl-C stops it.")
    out.print(f"[dim]{stops}[/]")
    sys.stdout.flush()
    try:
        server.run(config, listen, sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    out.print(_("Dashboard stopped."))


#: the commands this module adds to `guestlab`
COMMANDS = (serve,)
