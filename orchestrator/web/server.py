"""Running the app: uvicorn on a socket bound beforehand (so `--port 0` can be printed),
TLS when given, the SSH door in the same event loop when asked for.

Nothing here prints: the CLI says what is being served. Ctrl-C (or SIGTERM) stops
uvicorn gracefully; the app's lifespan then ends every terminal process.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from orchestrator.errors import GuestlabError
from orchestrator.messages import _
from orchestrator.web.app import build_app
from orchestrator.web.config import MAX_MESSAGE, ServeConfig

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ssh_port: int | None = None
    access_log: bool = False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a GuestlabError that says what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GuestlabError(
            _("cannot listen on {host}:{port}: {error}").format(
                host=host, port=port, error=e.strerror or e
            ),
            hint=_("choose another --port (0 picks a free one)"),
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def uvicorn_config(config: ServeConfig, listen: Listen) -> uvicorn.Config:
    extra: dict[str, Any] = {}
    if listen.tls_cert:
        extra = {"ssl_certfile": str(listen.tls_cert), "ssl_keyfile": str(listen.tls_key)}
    return uvicorn.Config(
        build_app(config),
        lifespan="on",
        access_log=False,  # our own AccessLog: uvicorn's would print students' links
        log_level="warning",
        ws_max_size=MAX_MESSAGE,  # a larger frame closes the socket with 1009
        ws_ping_interval=20,
        timeout_graceful_shutdown=10,
        server_header=False,
        **extra,
    )


async def _serve(config: ServeConfig, listen: Listen, sock: socket.socket) -> None:
    server = uvicorn.Server(uvicorn_config(config, listen))
    door = None
    if listen.ssh_port is not None:
        from orchestrator.web.ssh_door import start_ssh_door  # asyncssh only when asked

        try:
            door = await start_ssh_door(
                listen.host, listen.ssh_port, config.db_path, config.presence
            )
        except OSError as e:
            raise GuestlabError(
                _("cannot open the SSH door on {host}:{ssh_port}: {error}").format(
                    host=listen.host, ssh_port=listen.ssh_port, error=e.strerror or e
                ),
                hint=_("choose another --ssh-port"),
            ) from None
    try:
        await server.serve(sockets=[sock])
    finally:
        if door is not None:
            await door.close()


def run(config: ServeConfig, listen: Listen, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    asyncio.run(_serve(config, listen, sock))
