"""A command under a pseudo-terminal on the host, owned and reaped by the server.

The shape of terminado's terminals, written for asyncio: bytes in, bytes out, a resize,
and a close that leaves no process behind. Both doors use it: the browser terminal's
websocket and the SSH door's session run a backend's `shell_argv` through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Mapping, Sequence

#: the most one read returns; the caller's message cap is what bounds a client
READ_SIZE = 64 * 1024


def _set_size(fd: int, cols: int, rows: int) -> None:
    cols, rows = max(1, min(cols, 1000)), max(1, min(rows, 1000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_terminal() -> None:
    """In the child: make the PTY (its stdin) the controlling terminal of its session."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProcess:
    """A process whose stdin, stdout and stderr are one PTY; the server holds the master."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.fd = master
        self._closed = False

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: Mapping[str, str] | None = None,
    ) -> PtyProcess:
        master, slave = pty.openpty()
        try:
            _set_size(master, cols, rows)
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,  # its own process group: close() ends all of it
                preexec_fn=_take_terminal,
                env={**os.environ, "TERM": "xterm-256color", **(env or {})},
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(proc, master)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def _ready(self, writing: bool) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        add, remove = (
            (loop.add_writer, loop.remove_writer)
            if writing
            else (loop.add_reader, loop.remove_reader)
        )
        add(self.fd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            remove(self.fd)

    async def read(self) -> bytes:
        """The next output, at most READ_SIZE bytes; b"" once the process has ended."""
        while not self._closed:
            try:
                return os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                await self._ready(writing=False)
            except OSError as e:  # EIO: every holder of the PTY's other side is gone
                if e.errno in (errno.EIO, errno.EBADF):
                    return b""
                raise
        return b""

    async def write(self, data: bytes) -> None:
        """Send keystrokes; waits while the PTY's buffer is full."""
        view = memoryview(data)
        while view and not self._closed:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await self._ready(writing=True)
            except OSError as e:
                if e.errno in (errno.EIO, errno.EBADF):
                    return
                raise

    def resize(self, cols: int, rows: int) -> None:
        if not self._closed:
            _set_size(self.fd, cols, rows)

    async def close(self, grace: float = 2.0) -> int | None:
        """End the process group (SIGHUP, then SIGKILL after `grace`), reap it, free the PTY."""
        if self.proc.returncode is None:
            for sig in (signal.SIGHUP, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    await asyncio.wait_for(self.proc.wait(), grace)
                    break
                except TimeoutError:
                    continue
        if not self._closed:
            self._closed = True
            os.close(self.fd)
        return self.proc.returncode
