"""Browser terminals: a websocket per terminal, a PTY per websocket, watchers per lab.

`/api/terminal/MACHINE` runs the backend's interactive shell for that machine of the
student's own lab under a PTY on the host (`PtyProcess`). Keystrokes arrive as binary
frames; a text frame is a small JSON control message (`{"type": "resize", "cols": C,
"rows": R}`); output leaves as binary frames, and the end of the shell as one JSON text
frame with a sentence. A frame over MAX_MESSAGE closes the socket with 1009; a terminal
without a keystroke for `idle` seconds closes; a student holds at most `max_terminals`.
The instructor's watchers get a copy of every terminal's output of one lab and send
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator import messages
from orchestrator.messages import _, decimal
from orchestrator.state import Store
from orchestrator.web import access, i18n
from orchestrator.web.config import MAX_MESSAGE, ServeConfig, instructor_ok, seat_of, student_token
from orchestrator.web.in_machine import end_argv, marked_argv, new_marker
from orchestrator.web.pty_process import PtyProcess

BACKLOG = 32 * 1024  # output kept per terminal for a watcher who arrives later
WATCH_QUEUE = 256  # messages a slow watcher may lag behind before it is dropped


@dataclass(eq=False)
class Terminal:
    id: int
    lab: str
    machine: str
    proc: PtyProcess
    backlog: deque[bytes] = field(default_factory=deque)
    size: int = 0

    def keep(self, chunk: bytes) -> None:
        self.backlog.append(chunk)
        self.size += len(chunk)
        while self.size > BACKLOG and len(self.backlog) > 1:
            self.size -= len(self.backlog.popleft())


class Terminals:
    """The open terminals of the process, and who watches which lab."""

    def __init__(self) -> None:
        self.open: dict[int, Terminal] = {}
        self.watchers: dict[str, set[asyncio.Queue[Any]]] = {}

    def add(self, term: Terminal) -> None:
        self.open[term.id] = term
        self.publish(term.lab, {"type": "open", "id": term.id, "machine": term.machine})

    def remove(self, term: Terminal) -> None:
        if self.open.pop(term.id, None) is not None:
            self.publish(term.lab, {"type": "close", "id": term.id})

    def output(self, term: Terminal, chunk: bytes) -> None:
        term.keep(chunk)
        self.publish(term.lab, struct.pack(">I", term.id) + chunk)

    def publish(self, lab: str, message: Any) -> None:
        for queue in list(self.watchers.get(lab, ())):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # too slow to follow: dropped rather than slowing anyone
                self.watchers[lab].discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def watch(self, lab: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue(WATCH_QUEUE)
        self.watchers.setdefault(lab, set()).add(queue)
        for term in self.open.values():
            if term.lab == lab:
                queue.put_nowait({"type": "open", "id": term.id, "machine": term.machine})
                queue.put_nowait(struct.pack(">I", term.id) + b"".join(term.backlog))
        return queue

    def unwatch(self, lab: str, queue: asyncio.Queue[Any]) -> None:
        self.watchers.get(lab, set()).discard(queue)

    async def close_all(self) -> None:
        await asyncio.gather(*(t.proc.close() for t in list(self.open.values())))


def same_origin(ws: WebSocket) -> bool:
    """A browser's socket must come from our own pages (a script on another site cannot
    borrow the student's session); clients that send no Origin are not browsers."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host", "")


def _argv(
    config: ServeConfig, seat: access.Seat, machine: str, marker: str
) -> tuple[list[str], Any]:
    """The shell's host command, its shell marked; refused (SeatRefused) for a machine
    the lab lacks."""
    from orchestrator.lab import open_lab

    store = Store(config.db_path)
    try:
        lab, _record = open_lab(store, seat.scenario, seat.student)
    finally:
        store.close()
    inner = marked_argv(marker, None, "xterm-256color")
    return access.attach_argv(lab, machine, inner, tty=True), lab


def _end_in_machine(lab: Any, machine: str, marker: str) -> None:
    """End what the terminal left in the machine; a machine that is gone has nothing."""
    with contextlib.suppress(Exception):  # stopped or removed: nothing is left to end
        lab.backend_for(machine).exec(lab.ref, machine, end_argv(marker), timeout=15)


def _size(ws: WebSocket, name: str, default: int) -> int:
    try:
        return max(1, min(int(ws.query_params.get(name, default)), 1000))
    except ValueError:
        return default


async def _say(ws: WebSocket, message: str, code: int = 1000) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.send_text(json.dumps({"type": "closed", "message": message}))
        await ws.close(code)


def routes(config: ServeConfig, terminals: Terminals) -> list[WebSocketRoute]:
    async def terminal(ws: WebSocket) -> None:
        machine = ws.path_params["machine"]
        seat = await run_in_threadpool(seat_of, config.db_path, student_token(ws))
        if seat is None or not same_origin(ws):
            why = "no student's cookie or token" if seat is None else "another site's page"
            config.log(f"refused: a terminal socket with {why}")
            await ws.close(1008)
            return
        lang = await run_in_threadpool(i18n.seat_language, ws, config.db_path, seat)
        with messages.language(lang):  # what the terminal says, it says in the page's language
            marker = new_marker()
            try:
                argv, lab = await run_in_threadpool(_argv, config, seat, machine, marker)
            except access.SeatRefused as e:
                config.log(f"refused: {e}")
                await ws.close(1008)
                return
            await ws.accept()
            if config.presence.count(seat.lab, "web") >= config.max_terminals:
                said = _("You have {n} terminals open already.").format(n=config.max_terminals)
                await _say(ws, said, 1013)
                return
            await _run(ws, config, terminals, seat, machine, argv, lab, marker)

    async def watch(ws: WebSocket) -> None:
        if not instructor_ok(ws, config.token) or not same_origin(ws):
            config.log("refused: a watch socket without the dashboard's token")
            await ws.close(1008)
            return
        await ws.accept()
        await _watch(ws, terminals, ws.path_params["lab"])

    return [
        WebSocketRoute("/api/terminal/{machine}", terminal),
        WebSocketRoute("/watch/{lab}", watch),
    ]


async def _run(
    ws: WebSocket,
    config: ServeConfig,
    terminals: Terminals,
    seat: access.Seat,
    machine: str,
    argv: list[str],
    lab: Any,
    marker: str,
) -> None:
    """One terminal's life: spawn, pump both ways, and leave nothing behind."""
    try:
        proc = await PtyProcess.spawn(argv, cols=_size(ws, "cols", 80), rows=_size(ws, "rows", 24))
    except OSError as e:
        said = _("The terminal could not start: {error}.").format(error=e.strerror or e)
        await _say(ws, said, 1011)
        return
    session = config.presence.enter(seat.lab, machine, "web")
    term = Terminal(session.id, seat.lab, machine, proc)
    terminals.add(term)
    try:
        await _pump(ws, config, terminals, term)
    finally:
        terminals.remove(term)
        config.presence.leave(session)
        await proc.close()
        await run_in_threadpool(_end_in_machine, lab, machine, marker)


async def _pump(ws: WebSocket, config: ServeConfig, terminals: Terminals, term: Terminal) -> None:
    async def out() -> str:
        while chunk := await term.proc.read():
            terminals.output(term, chunk)
            await ws.send_bytes(chunk)
        code = await term.proc.proc.wait()
        return _("The shell in {machine} ended (exit status {code}).").format(
            machine=term.machine, code=code
        )

    async def into() -> str:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), config.idle - (loop.time() - last))
            except TimeoutError:
                if config.idle >= 60:
                    idle = f"{decimal(config.idle / 60, 0 if config.idle % 60 == 0 else 1)} min"
                else:
                    idle = f"{config.idle:g} s"
                return _("Closed after {idle} without a keystroke.").format(idle=idle)
            if msg["type"] == "websocket.disconnect":
                return ""
            payload = msg.get("bytes") if msg.get("bytes") is not None else msg.get("text")
            if payload is not None and len(payload) > MAX_MESSAGE:
                config.log(f"refused: a terminal message of {len(payload)} bytes")
                await ws.close(1009)
                return ""
            if msg.get("bytes") is not None:
                last = loop.time()
                await term.proc.write(msg["bytes"])
            elif msg.get("text"):
                _control(term, msg["text"])

    tasks = [asyncio.ensure_future(out()), asyncio.ensure_future(into())]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    with contextlib.suppress(Exception):
        sentence = next(iter(done)).result()
        if sentence:
            await _say(ws, sentence)


def _control(term: Terminal, raw: str) -> None:
    """A control message: only a resize is known; anything else is ignored."""
    try:
        msg = json.loads(raw)
        if msg.get("type") == "resize":
            term.proc.resize(int(msg["cols"]), int(msg["rows"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        pass


async def _watch(ws: WebSocket, terminals: Terminals, lab: str) -> None:
    """Send a lab's terminals to a watcher until it leaves; what it sends is dropped."""
    queue = terminals.watch(lab)

    async def drain() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass

    reader = asyncio.ensure_future(drain())
    try:
        while not reader.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            message = getter.result()
            if message is None:
                break
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_text(json.dumps(message))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        reader.cancel()
        terminals.unwatch(lab, queue)
