"""One session of the SSH door: a shell or a command in a lab's machine, nothing left after.

With a terminal requested the backend's attached command runs under a PTY on the host
(window changes resize it); without one, under pipes, so that stdout, stderr and the
exit status reach the client apart and unchanged, as with any SSH server. Output moves
only as fast as the client takes it (the channel's window), so memory stays bounded.

Whatever ends a session (its process exits, the client goes away, the door stops), every
process it started in the machine is ended: each carries a random marker in its
environment, and the door kills what carries it from inside the machine. Killing the host
command alone is not enough: `docker exec` leaves its process running in the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncssh

from orchestrator import messages
from orchestrator.errors import GuestlabError
from orchestrator.messages import _
from orchestrator.web.access import Seat, SeatRefused
from orchestrator.web.in_machine import marked_argv, new_marker
from orchestrator.web.pty_process import READ_SIZE, PtyProcess

if TYPE_CHECKING:
    from orchestrator.backends.contract import Executor, LabRef
    from orchestrator.web.presence import Presence
    from orchestrator.web.ssh_auth import Login

log = logging.getLogger("guestlab.ssh")

#: the longest command line a client may send
MAX_COMMAND = 64 * 1024
#: keystrokes queued for a process before the client is asked to wait
INBOX_LIMIT = 256 * 1024
#: how long output may still arrive once the process has exited
DRAIN_GRACE = 2.0


@dataclass(frozen=True)
class Opened:
    """A session's host command and where its processes run."""

    argv: list[str]
    machine: str
    executor: Executor
    ref: LabRef


class Opener(Protocol):
    """What a session asks of the door (the door opens labs in a worker thread)."""

    presence: Presence
    max_sessions: int

    async def open(
        self, seat: Seat, machine: str | None, argv: Sequence[str], tty: bool
    ) -> Opened: ...

    def end_in_machine(self, opened: Opened, marker: str) -> None: ...


def exit_code(returncode: int | None) -> int:
    """An SSH exit status: a signal's death as 128+N, like a shell says it."""
    if returncode is None:
        return 255
    return returncode if returncode >= 0 else 128 - returncode


class DoorSession(asyncssh.SSHServerSession[bytes]):
    """A channel's session: refuses subsystems, runs one shell or command, then ends; what
    it says to the client is in `lang` (the language its lab was brought up in)."""

    def __init__(
        self, door: Opener, seats: list[Seat], login: Login, who: str, lang: str = "en"
    ) -> None:
        self.door, self.seats, self.login, self.who = door, seats, login, who
        self.lang = lang
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command: str | None = None
        self.term: tuple[str, int, int] | None = None  # type, columns, rows
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued = 0
        self.writable = asyncio.Event()
        self.writable.set()
        self.pty: PtyProcess | None = None
        self.task: asyncio.Task[None] | None = None

    # -- what the client asks for -------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:  # type: ignore[override]
        self.chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: object
    ) -> bool:
        self.term = (term_type, term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        if len(command) > MAX_COMMAND:
            log.warning("ssh door refused a %d-byte command from %s", len(command), self.who)
            return False
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        # SFTP and the like would reach the host's files: the lab's machine has its own
        log.warning("ssh door refused subsystem %r from %s", subsystem[:40], self.who)
        return False

    def session_started(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data: bytes, datatype: int | None) -> None:  # type: ignore[override]
        self.queued += len(data)
        self.inbox.put_nowait(data)
        if self.queued > INBOX_LIMIT and self.chan is not None:
            self.chan.pause_reading()  # the process is slow to read: the client waits

    def eof_received(self) -> bool:
        self.inbox.put_nowait(None)
        return True  # half-closed: output and the exit status are still to come

    def terminal_size_changed(self, width: int, height: int, pixw: int, pixh: int) -> None:
        if self.term is not None:
            self.term = (self.term[0], width, height)
        if self.pty is not None:
            self.pty.resize(width, height)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()  # its `finally` ends the process, here and in the machine

    # -- running it ---------------------------------------------------------------------------
    def _tell(self, text: str) -> None:
        """A sentence for the client, on stderr (a terminal needs its carriage returns)."""
        line = text + "\n"
        if self.term is not None:
            line = line.replace("\n", "\r\n")
        if self.chan is not None:
            with contextlib.suppress(OSError):
                self.chan.write_stderr(line.encode())

    async def run(self) -> None:
        status = 1
        # the task's own context: the worker threads it starts (opening the lab) inherit it
        messages.use(self.lang)
        try:
            status = await self.serve()
        except GuestlabError as e:
            log.warning("ssh door refused %s: %s", self.who, e)
            self._tell(f"guestlab: {e}" + (f" ({e.hint})" if e.hint else ""))
        except Exception:
            log.exception("ssh door session of %s failed", self.who)
            self._tell("guestlab: " + _("the session failed; the instructor's log says why"))
        if self.chan is not None:
            with contextlib.suppress(OSError):  # the client may be gone already
                self.chan.exit(status)

    def seat(self) -> Seat:
        if len(self.seats) == 1:
            return self.seats[0]
        keys = ", ".join(s.lab for s in self.seats)
        raise SeatRefused(
            _("{name} has labs of {n} scenarios").format(name=self.login.name, n=len(self.seats)),
            hint=_("log in as one of: {keys} (add +MACHINE for another machine)").format(keys=keys),
        )

    async def serve(self) -> int:
        seat = self.seat()
        marker = new_marker()
        tty = self.term is not None
        argv = marked_argv(marker, self.command, self.term[0] if self.term else None)
        opened = await self.door.open(seat, self.login.machine, argv, tty)
        # counted and entered with no wait between: two sessions cannot both take the last place
        if self.door.presence.count(seat.lab, "ssh") >= self.door.max_sessions:
            raise SeatRefused(
                _("at most {n} SSH sessions at once per lab").format(n=self.door.max_sessions)
            )
        session = self.door.presence.enter(seat.lab, opened.machine, "ssh")
        log.info("ssh door opened %s on %s for %s", opened.machine, seat.lab, self.who)
        try:
            return await (self.run_pty(opened.argv) if tty else self.run_pipes(opened.argv))
        finally:
            self.door.presence.leave(session)
            self.door.end_in_machine(opened, marker)
            log.info("ssh door closed %s on %s for %s", opened.machine, seat.lab, self.who)

    async def pump_out(self, read: Callable[[], Awaitable[bytes]], stderr: bool = False) -> None:
        """Copy a process's output to the client, no faster than the client takes it."""
        assert self.chan is not None
        send = self.chan.write_stderr if stderr else self.chan.write
        while data := await read():
            await self.writable.wait()
            try:
                send(data)
            except BrokenPipeError:  # the client closed its side: nobody reads any more
                return

    async def pump_in(
        self, write: Callable[[bytes], Awaitable[None]], eof: Callable[[], Awaitable[None]]
    ) -> None:
        """Copy the client's input to the process; EOF is passed on once."""
        while (data := await self.inbox.get()) is not None:
            await write(data)
            self.queued -= len(data)
            if self.queued <= INBOX_LIMIT and self.chan is not None:
                self.chan.resume_reading()
        await eof()

    def settle(self, results: list[object]) -> None:
        """Log what went wrong in a session's copying tasks (a gone client ends them too)."""
        for r in results:
            if isinstance(r, Exception):
                log.info("ssh door session of %s: its streams ended with %r", self.who, r)

    async def run_pty(self, argv: list[str]) -> int:
        assert self.term is not None
        pty = self.pty = await PtyProcess.spawn(argv, cols=self.term[1], rows=self.term[2])

        async def eof() -> None:
            await pty.write(b"\x04")  # piped input ran out: end the shell as ^D would

        feeding = asyncio.create_task(self.pump_in(pty.write, eof))
        try:
            await self.pump_out(pty.read)  # b"" once every holder of the terminal is gone
            return exit_code(await pty.proc.wait())
        finally:
            feeding.cancel()
            await pty.close()
            self.settle(await asyncio.gather(feeding, return_exceptions=True))

    async def run_pipes(self, argv: list[str]) -> int:
        pipe = asyncio.subprocess.PIPE
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=pipe, stdout=pipe, stderr=pipe, start_new_session=True
        )
        assert proc.stdin and proc.stdout and proc.stderr
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

        async def write(data: bytes) -> None:
            stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await stdin.drain()

        async def eof() -> None:
            stdin.close()

        feeding = asyncio.create_task(self.pump_in(write, eof))
        output = asyncio.gather(
            self.pump_out(lambda: stdout.read(READ_SIZE)),
            self.pump_out(lambda: stderr.read(READ_SIZE), stderr=True),
        )
        try:
            code = await proc.wait()
            # a process left in the background may hold the pipes: wait a little, not forever
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(output), DRAIN_GRACE)
            return exit_code(code)
        finally:
            feeding.cancel()
            output.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self.settle(await asyncio.gather(feeding, output, return_exceptions=True))
