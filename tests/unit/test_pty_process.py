"""A PTY process on the host: output, input, resize, and nothing left after close."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from orchestrator.web.pty_process import PtyProcess


async def _read_until(p: PtyProcess, needle: bytes, limit: float = 5.0) -> bytes:
    seen = b""
    async with asyncio.timeout(limit):
        while needle not in seen:
            chunk = await p.read()
            if not chunk:
                break
            seen += chunk
    return seen


def test_keystrokes_reach_a_shell_and_its_answer_comes_back() -> None:
    async def go() -> bytes:
        p = await PtyProcess.spawn(["sh", "-i"], env={"PS1": "$ "})
        await p.write(b"echo $((6*7))\n")
        out = await _read_until(p, b"42")
        await p.close()
        return out

    assert b"42" in asyncio.run(go())


def test_the_process_sees_a_terminal_of_the_size_asked() -> None:
    async def go() -> bytes:
        p = await PtyProcess.spawn(["sh", "-c", "sleep 0.3; stty size"], cols=91, rows=17)
        out = await _read_until(p, b"17 91")
        p.resize(120, 40)
        await p.close()
        return out

    assert b"17 91" in asyncio.run(go())


def test_resize_reaches_the_running_process() -> None:
    async def go() -> bytes:
        p = await PtyProcess.spawn(["sh", "-i"], env={"PS1": "$ "})
        p.resize(133, 44)
        await p.write(b"stty size\n")
        out = await _read_until(p, b"44 133")
        await p.close()
        return out

    assert b"44 133" in asyncio.run(go())


def test_close_ends_the_whole_process_group() -> None:
    async def go() -> tuple[int, int | None]:
        p = await PtyProcess.spawn(["sh", "-c", "trap '' HUP; sleep 300 & echo $!; wait"])
        child = int((await _read_until(p, b"\n")).split()[0])
        code = await p.close(grace=0.5)
        return child, code

    child, code = asyncio.run(go())
    assert code is not None
    assert _gone_within(child, 5.0)


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether `pid` is dead (gone or a zombie) within `seconds`: SIGKILL is delivered async."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def test_read_says_eof_once_the_process_ends() -> None:
    async def go() -> bytes:
        p = await PtyProcess.spawn(["true"])
        out = b""
        async with asyncio.timeout(5):
            while chunk := await p.read():
                out += chunk
        await p.close()
        return out

    assert asyncio.run(go()) == b""
