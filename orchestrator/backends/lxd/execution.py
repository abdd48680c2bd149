"""Commands in an LXD machine over the exec websockets, bounded in time and in output.

LXD's `record-output` exec writes whatever a command prints to files on the host
(/var/log/lxd/NAME/exec_*.stdout) for as long as it prints: a machine could fill the
host's disk. Here the output streams over websockets and guestlab keeps at most
OUTPUT_LIMIT of each stream; a command that prints more, or runs past its time, is
killed from the host (its process tree, found through LXD's forkexec helper), with
LXD's control channel as the fallback where LXD runs elsewhere. Nothing the machine
holds (its `timeout`, its `sh`) decides how long guestlab waits.

LXD reports a command's exit code only once every process holding its stdout and
stderr has closed them, so `daemon &` would keep the call waiting. The command runs
under a small shell that prints its exit code after a random marker on stderr, where
guestlab reads it as soon as the command ends; LXD's own code is used when it comes.
"""

from __future__ import annotations

import json
import re
import select
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from orchestrator.backends.contract import OUTPUT_LIMIT, ExecResult

#: what guestlab still reads after a command ended while something else holds its output
DRAIN_GRACE = 0.3
#: how long guestlab waits for LXD to report the end of a killed command
KILL_GRACE = 3.0
#: the longest a websocket's connection or one read may take
CONNECT_TIMEOUT = 15.0
#: how many times an exec is asked for when LXD gave it up before its command started
CONNECT_TRIES = 3
#: runs "$@", then prints its exit code after the marker ($1) on stderr
WRAPPER = 'm=$1; shift; "$@"; r=$?; printf "\\n%s%d\\n" "$m" "$r" >&2; exit "$r"'
STDIN, STDOUT, STDERR, CONTROL = "0", "1", "2", "control"


def wrap(argv: Sequence[str], marker: str) -> list[str]:
    """argv under the wrapper that prints its exit code after `marker` on stderr."""
    return ["sh", "-c", WRAPPER, "sh", marker, *argv]


def new_marker() -> str:
    """A random marker no command can guess, for one exec."""
    return f"guestlab-exit-{uuid.uuid4().hex}:"


def split_exit(stderr: bytes, marker: str) -> tuple[bytes, int | None]:
    """Take the wrapper's exit line off stderr: (stderr as the command wrote it, code)."""
    token = b"\n" + marker.encode()
    at = stderr.rfind(token)
    if at < 0:
        return stderr, None
    match = re.fullmatch(rb"(-?\d+)\n?", stderr[at + len(token) :])
    if not match:
        return stderr, None
    return stderr[:at], int(match.group(1))


@dataclass
class Capped:
    """One output stream, of which at most `limit` bytes are kept."""

    limit: int = OUTPUT_LIMIT
    data: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.overflow = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk


def _ws_class() -> type:
    from ws4py.client import WebSocketBaseClient

    class Stream(WebSocketBaseClient):  # type: ignore[misc]
        """One exec websocket; messages go to `sink`, the end sets `ended`."""

        def __init__(self, url: str, sink: Callable[[bytes], None], tls: Tls | None) -> None:
            self.sink = sink
            self.ended = False
            self.tls = tls
            super().__init__(url, exclude_headers=["origin"])
            self.sock.settimeout(CONNECT_TIMEOUT)  # a connect or a read never hangs for good

        def connect(self) -> None:
            if self.scheme != "wss" or self.tls is None:
                super().connect()
                return
            connect_tls(self, self.tls)

        def received_message(self, message: Any) -> None:
            if message.is_binary and message.data:
                self.sink(bytes(message.data))
            elif not message.data:
                self.ended = True  # LXD's end of stream: an empty message

        def closed(self, code: int, reason: Any = None) -> None:
            self.ended = True

        def unhandled_error(self, error: Any) -> None:
            self.ended = True  # a connection reset or closed: the stream is over, quietly

        def _write(self, frame: bytes) -> None:
            """Send a frame. LXD closes every websocket of an exec when its command ends,
            maybe while this thread answers a ping LXD sent (ws4py answers as it reads,
            the handshake's reply included): that answer is lost, not what LXD sent."""
            with suppress(BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                super()._write(frame)

        def pump(self) -> None:
            """Read what the socket has, and what ws4py keeps in its own buffers."""
            try:
                while not self.ended and self.sock is not None:
                    if not self.once():
                        self.ended = True
                        return
                    pending = self._is_secure and self.sock is not None and self.sock.pending()
                    if not self.buf and not pending:
                        return
            except OSError:
                self.ended = True

    return Stream


def connect_tls(ws: Any, tls: Tls) -> None:
    """Open a `wss` exec websocket (a ws4py client) with TLS done here: ws4py would not
    check the server's certificate. A pinned certificate must match."""
    from ws4py.exc import HandshakeError

    ws.sock = tls.context.wrap_socket(ws.sock, server_hostname=ws.host)
    ws.sock.connect(ws.bind_addr)
    der = ws.sock.getpeercert(binary_form=True) or b""
    if tls.pin and fingerprint(der) != tls.pin:
        ws.close_connection()
        raise ssl.SSLError("the LXD server's certificate is not the pinned one")
    ws._is_secure = True
    ws.sock.sendall(ws.handshake_request)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = ws.sock.recv(128)
        if not chunk:
            break
        response += chunk
    headers, _, body = response.partition(b"\r\n\r\n")
    status, _, headers = headers.partition(b"\r\n")
    try:
        ws.process_response_line(status)
        ws.protocols, ws.extensions = ws.process_handshake_header(headers)
    except HandshakeError:
        ws.close_connection()
        raise
    ws.handshake_ok()
    if body:
        ws.process(body)


@dataclass(frozen=True)
class Tls:
    """How the websockets check a remote LXD: a context, and the pinned certificate."""

    context: ssl.SSLContext
    pin: str | None = None


def fingerprint(der: bytes) -> str:
    import hashlib

    return hashlib.sha256(der).hexdigest()


@dataclass
class ExecSession:
    """One command: its operation, its websockets, what it printed."""

    client: Any
    instance: str
    argv: Sequence[str]
    timeout: float
    kill_tree: Callable[[str, str], int]
    tls: Tls | None = None
    marker: str = field(default_factory=new_marker)
    out: Capped = field(default_factory=Capped)
    err: Capped = field(default_factory=Capped)

    def run(self) -> ExecResult:
        limit = max(self.timeout, 0.1)
        for attempt in range(1, CONNECT_TRIES + 1):
            started = time.monotonic()
            fds = self._start()
            try:
                streams = self._connect(fds)
                break
            except Exception:
                if attempt == CONNECT_TRIES or not self._never_started():
                    raise
        try:
            return self._pump(streams, started + limit, limit)
        finally:
            for ws in streams.values():
                ws.close_connection()

    def _start(self) -> dict[str, str]:
        """Ask LXD for the exec; the secrets of its websockets."""
        response = self.client.api.instances[self.instance]["exec"].post(
            json={
                "command": wrap(self.argv, self.marker),
                "environment": {},
                "interactive": False,
                "wait-for-websocket": True,
                "record-output": False,
            }
        )
        body = response.json()
        self.operation = operation_id(body["operation"])
        fds: dict[str, str] = body["metadata"]["metadata"]["fds"]
        return fds

    def _never_started(self) -> bool:
        """Whether LXD gave this exec up before its command started: it waits five seconds
        for the websockets, which a thread kept off the cores longer (a loaded host) missed.
        Only then is the command run again."""
        try:
            meta = self.client.api.operations[self.operation].get().json()["metadata"]
        except Exception:
            return False
        failed = meta.get("status") == "Failure"
        return failed and "waiting for websockets" in str(meta.get("err") or "")

    def _connect(self, fds: dict[str, str]) -> dict[str, Any]:
        stream = _ws_class()
        url = self.client.websocket_url
        path = f"/1.0/operations/{self.operation}/websocket"
        sinks: dict[str, Callable[[bytes], None]] = {
            CONTROL: lambda _b: None,
            STDIN: lambda _b: None,
            STDOUT: self.out.add,
            STDERR: self.err.add,
        }
        streams: dict[str, Any] = {}
        try:
            # stdin first, and its end of input sent at once (the command reads nothing):
            # LXD starts the command as soon as 0, 1 and 2 are connected and closes every
            # websocket when it ends, so an end of input sent after the last connection
            # found a quick command gone whenever this thread waited for a core meanwhile
            # (a loaded host), and its write broke the pipe
            for fd in (STDIN, CONTROL, STDOUT, STDERR):
                ws = stream(url, sinks[fd], self.tls)
                ws.resource = f"{path}?secret={fds[fd]}"
                ws.connect()
                streams[fd] = ws
                if fd == STDIN:
                    ws.send(b"", binary=False)
        except BaseException:
            for ws in streams.values():
                ws.close_connection()
            raise
        return streams

    def _pump(self, streams: dict[str, Any], deadline: float, limit: float) -> ExecResult:
        readers = [ws for fd, ws in streams.items() if fd != STDIN]
        ended_at: float | None = None  # when the wrapper printed the exit code
        while True:
            if self.out.overflow or self.err.overflow:
                return self._stop(streams, limit, timed_out=False)
            output_done = streams[STDOUT].ended and streams[STDERR].ended
            if output_done:
                return self._finish(self._lxd_code(2.0))
            now = time.monotonic()
            if ended_at is None and split_exit(bytes(self.err.data), self.marker)[1] is not None:
                ended_at = now
            if ended_at is not None and now - ended_at >= DRAIN_GRACE:
                # the command ended; a process it left behind holds its output
                return self._finish(None)
            if now >= deadline:
                return self._stop(streams, limit, timed_out=True)
            wait = min(deadline - now, DRAIN_GRACE if ended_at is not None else 1.0)
            live = {ws.sock: ws for ws in readers if ws.sock is not None and not ws.ended}
            if not live:
                time.sleep(min(wait, 0.05))
                continue
            ready, _, _ = select.select(list(live), [], [], max(wait, 0.0))
            for sock in ready:
                live[sock].pump()

    def _lxd_code(self, wait: float) -> int | None:
        """The exit code LXD recorded, once it has (None if it does not say in time)."""
        op = self.client.api.operations[self.operation]
        try:
            meta = op.wait.get(params={"timeout": max(1, round(wait))}).json()["metadata"]
        except Exception:
            return None
        if not meta or meta.get("status") == "Running":
            return None
        code = (meta.get("metadata") or {}).get("return")
        return int(code) if code is not None else None

    def _finish(self, lxd_code: int | None) -> ExecResult:
        stderr, wrapped = split_exit(bytes(self.err.data), self.marker)
        code = lxd_code if lxd_code is not None else wrapped
        return ExecResult(-1 if code is None else code, _text(self.out.data), _text(stderr))

    def _stop(self, streams: dict[str, Any], limit: float, *, timed_out: bool) -> ExecResult:
        """Kill the command from outside the machine; the result says why."""
        killed = self.kill_tree(self.instance, self.marker)
        if not killed:  # LXD elsewhere: its control channel signals the command's process
            with suppress(Exception):  # the command may have ended meanwhile
                streams[CONTROL].send(
                    json.dumps({"command": "signal", "args": {}, "signal": 9}), binary=False
                )
        for ws in streams.values():  # LXD may be blocked sending to us: let it go
            ws.close_connection()
        code = self._lxd_code(KILL_GRACE) if not timed_out else None
        stderr, _ = split_exit(bytes(self.err.data), self.marker)
        if timed_out:  # 124, as coreutils' timeout says
            return ExecResult(124, _text(self.out.data), _text(stderr), timed_out=True)
        return ExecResult(
            code if code is not None else 137,
            _text(self.out.data),
            _text(stderr),
            truncated=True,
        )


def kill_inside(client: Any, instance: str, marker: str) -> int:
    """Kill a command from a second exec in its machine, found by the marker in its
    wrapper's arguments; 0, so that LXD's control channel signals the wrapper too.

    For an LXD elsewhere (a cluster member forwards the exec): this host cannot see the
    command's processes, and the control channel's signal reaches the wrapper at most,
    not its children. Never used for the local LXD, whose process tree `kill_exec` kills.
    """
    pattern = f"[{marker[0]}]{marker[1:]}"  # never matches this script itself
    script = (  # stopped first, so that no child of it starts meanwhile
        f'for p in $(pgrep -f "{pattern}"); do'
        ' kill -STOP "$p"; pkill -KILL -P "$p"; kill -KILL "$p"; done'
    )
    with suppress(Exception):  # best effort: the command may be gone already
        body = {
            "command": ["sh", "-c", script],
            "environment": {},
            "interactive": False,
            "wait-for-websocket": False,
            "record-output": False,
        }
        response = client.api.instances[instance]["exec"].post(json=body)
        op = operation_id(response.json()["operation"])
        client.api.operations[op].wait.get(params={"timeout": 10})
    return 0


def operation_id(url: str) -> str:
    """An operation's id from its URL; a cluster member forwarding a request names it
    `/1.0/operations/ID?project=...`."""
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")
