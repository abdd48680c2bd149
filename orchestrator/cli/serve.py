"""`guestlab serve`: the live dashboard of the classes, read-only, behind a token."""

from __future__ import annotations

import sys
import urllib.parse

import click
from rich.markup import escape

from orchestrator import textsafe
from orchestrator.cli import options
from orchestrator.cli.console import err, out
from orchestrator.errors import GuestlabError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free."
)
@click.option("--access-log", is_flag=True, help="Print each request on stderr.")
def serve(host: str, port: int, access_log: bool) -> None:
    """Serve the live dashboard: students x tasks, refreshed every few seconds.

    Open the URL printed at start: it carries a random token, needed by every request
    (`?token=`, `Authorization: Bearer TOKEN` or `X-Guestlab-Token`). The dashboard only
    reads the state store, so every command keeps working while it runs. Stop it with
    Ctrl-C.
    """
    from orchestrator.classroom.dashboard import DashboardServer, class_ids, new_token
    from orchestrator.classroom.store import ClassStore

    store = options.store()
    ClassStore(store.db)  # the tables exist before the read-only connections look for them
    path = store.path
    store.close()
    token = new_token()

    def log(line: str) -> None:
        if access_log:
            err.print(f"[dim]{textsafe.markup(line)}[/]")

    try:
        server = DashboardServer((host, port), path, token, log)
    except OSError as e:
        raise GuestlabError(
            f"cannot listen on {host}:{port}: {e.strerror or e}",
            hint="choose another --port (0 picks a free one)",
        ) from None
    # click.echo: a URL must not be wrapped at the terminal's width
    click.echo(f"Dashboard: {server.url}?token={token}")
    for cid in class_ids(path):
        click.echo(f"  class {cid}: {server.url}class/{urllib.parse.quote(cid)}?token={token}")
    if host not in LOCAL_HOSTS:
        err.print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach it and has"
            " the token sees the grades (plain HTTP)"
        )
    out.print("[dim]Ctrl-C stops it.[/]")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        out.print("Dashboard stopped.")
    finally:
        server.server_close()
