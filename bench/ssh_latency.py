"""Keystroke round trip through the SSH door against `docker exec -it`, same machine, same run.

Brings up one Docker lab (a private state store, the shared images), starts the door on an
event loop of its own (as `guestlab serve` does), and times, N times each, one character
sent to the machine's bash until its echo comes back: over SSH (an asyncssh client with a
terminal, password = the lab's token) and through `docker exec -it` under a host PTY.
Prints median and p95 and writes bench/results/ssh-latency.json.

    python bench/ssh_latency.py [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCENARIO = "machine-id-clone"
Send = Callable[[bytes], Awaitable[None]]
Read = Callable[[], Awaitable[bytes]]


def guestlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip


async def round_trips(send: Send, read: Read, samples: int) -> list[float]:
    """Milliseconds from one keystroke sent to its echo read back, `samples` times."""
    await asyncio.sleep(1.0)  # the shell's prompt and profile are done
    out: list[float] = []
    for n in range(samples):
        started = time.perf_counter()
        await send(b"x")
        seen = b""
        while b"x" not in seen:
            seen += await read()
        out.append((time.perf_counter() - started) * 1000)
        if n % 20 == 19:
            await send(b"\x15")  # ^U: keep bash's line short
            await asyncio.sleep(0.05)
    return out


async def over_ssh(port: int, student: str, token: str, samples: int) -> list[float]:
    import asyncssh

    async with asyncssh.connect(
        "127.0.0.1", port, username=student, password=token, known_hosts=None,
        client_keys=None, agent_path=None,
    ) as conn:  # fmt: skip
        proc = await conn.create_process(term_type="xterm", encoding=None)

        async def send(data: bytes) -> None:
            proc.stdin.write(data)

        async def read() -> bytes:
            return await proc.stdout.read(4096)

        result = await round_trips(send, read, samples)
        proc.stdin.write(b"exit\n")
        return result


async def over_docker_exec(container: str, samples: int) -> list[float]:
    from orchestrator.web.pty_process import PtyProcess

    pty = await PtyProcess.spawn(["docker", "exec", "-it", container, "/bin/bash", "-l"])
    try:
        return await round_trips(pty.write, pty.read, samples)
    finally:
        await pty.close()


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def start_door() -> int:
    from orchestrator import paths
    from orchestrator.web.presence import Presence
    from orchestrator.web.ssh_door import start_ssh_door

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    door = start_ssh_door("127.0.0.1", 0, paths.home() / "state.db", Presence())
    return int(asyncio.run_coroutine_threadsafe(door, loop).result(60).get_port())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    from orchestrator import paths

    os.environ.setdefault("GUESTLAB_IMAGES", str(paths.images_dir()))
    os.environ["GUESTLAB_HOME"] = tempfile.mkdtemp(prefix="guestlab-bench-")
    student = f"bench{os.getpid()}"
    guestlab("up", SCENARIO, "--student", student, "--backend", "docker")
    try:
        from orchestrator.backends.contract import LabRef
        from orchestrator.credentials import Seats
        from orchestrator.state import Store

        key = LabRef(SCENARIO, student).key
        store = Store()
        token = Seats(store.db).issue(key)
        store.close()
        port = start_door()
        ssh = asyncio.run(over_ssh(port, student, token, args.samples))
        docker = asyncio.run(over_docker_exec(f"gl-{key}-template", args.samples))
    finally:
        guestlab("down", SCENARIO, "--student", student)
    result = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "samples": args.samples,
        "ssh_door": summary(ssh),
        "docker_exec_it": summary(docker),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "results" / "ssh-latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
