"""The student's seat under load, on Docker: keystroke latency, memory, CPU, check time.

- keystroke round trip (send one character, time until its echo; 100 samples, median and
  p95) through the browser terminal's websocket and through `docker exec -it` on a PTY,
  into the same machine in the same run;
- `guestlab serve` with N students each holding an open terminal: its RSS, the RSS of
  the `docker exec` clients it runs, its CPU while they sit idle and while every student
  types a command once a second;
- `POST /api/check` against `guestlab check --format json` for the same lab.

A class of N (default 30) labs of the one-machine scenario machine-id-inspect comes up
with `class up` in a private GUESTLAB_HOME and goes down at the end.
Writes bench/results/seat-docker.json.

    python bench/seat.py [--students 30] [--samples 100]
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
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCENARIO = "machine-id-inspect"

from orchestrator.web.pty_process import PtyProcess  # noqa: E402


def guestlab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    if check and proc.returncode != 0:
        raise SystemExit(f"guestlab {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "samples": len(ordered),
    }


async def ws_latency(base: str, token: str, samples: int) -> list[float]:
    import websockets

    url = base.replace("http://", "ws://") + "/api/terminal/guest"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await settle_ws(ws)
        out = []
        for i in range(samples):
            key = b"x" if i % 2 == 0 else b"\x7f"  # type, then erase: the line stays short
            started = time.perf_counter()
            await ws.send(key)
            await ws.recv()
            out.append(time.perf_counter() - started)
            await settle_ws(ws, 0.02)
        return out


async def settle_ws(ws: Any, quiet: float = 1.0) -> None:
    """Read until the terminal has been quiet for `quiet` seconds (the prompt is drawn)."""
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            return


async def exec_latency(container: str, samples: int) -> list[float]:
    proc = await PtyProcess.spawn(["docker", "exec", "-it", container, "/bin/bash", "-l"])
    try:
        await settle_pty(proc)
        out = []
        for i in range(samples):
            key = b"x" if i % 2 == 0 else b"\x7f"
            started = time.perf_counter()
            await proc.write(key)
            await proc.read()
            out.append(time.perf_counter() - started)
            await settle_pty(proc, 0.02)
        await proc.write(b"exit\r")
        return out
    finally:
        await proc.close()


async def settle_pty(proc: PtyProcess, quiet: float = 1.0) -> None:
    while True:
        try:
            await asyncio.wait_for(proc.read(), quiet)
        except TimeoutError:
            return


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = [int(p) for p in out.split()]
    return found + [c for p in found for c in children(p)]


async def hold_terminals(base: str, tokens: list[str], pid: int, typing_s: float) -> dict[str, Any]:
    """Open a terminal per token; measure the server idle, then with everyone typing."""
    import websockets

    url = base.replace("http://", "ws://") + "/api/terminal/guest"
    socks = [await websockets.connect(url, additional_headers={"Authorization": f"Bearer {t}"})
             for t in tokens]  # fmt: skip
    await asyncio.gather(*(settle_ws(s, 2.0) for s in socks))
    kids = children(pid)
    idle_cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(10)
    idle = (cpu_seconds(pid) - idle_cpu0) / (time.monotonic() - t0)
    result = {"terminals": len(socks), "serve_rss_kib": rss_kib(pid),
              "clients_rss_kib": sum(rss_kib(k) for k in kids if Path(f"/proc/{k}").exists()),
              "clients": len(kids), "idle_cpu_percent": round(idle * 100, 2)}  # fmt: skip

    async def typist(ws: Any) -> None:
        end = time.monotonic() + typing_s
        while time.monotonic() < end:
            await ws.send(b"ls /etc | head -3\r")
            await settle_ws(ws, 0.5)

    busy_cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(typist(s) for s in socks))
    busy = (cpu_seconds(pid) - busy_cpu0) / (time.monotonic() - t0)
    result["typing_cpu_percent"] = round(busy * 100, 2)
    result["serve_rss_kib_after_typing"] = rss_kib(pid)
    for s in socks:
        await s.close()
    return result


def check_times(base: str, token: str, student: str, runs: int) -> dict[str, Any]:
    import urllib.request

    api, cli = [], []
    for _ in range(runs):
        req = urllib.request.Request(base + "/api/check", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        started = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as res:
            report = json.loads(res.read())
        api.append(time.perf_counter() - started)
        time.sleep(2.1)  # the seat's rate limit
        started = time.perf_counter()
        proc = guestlab("check", SCENARIO, "--student", student, "--format", "json", check=False)
        cli.append(time.perf_counter() - started)
    same_keys = set(report) == set(json.loads(proc.stdout))
    return {"api_check_s": [round(x, 3) for x in api], "cli_check_s": [round(x, 3) for x in cli],
            "api_median_s": round(statistics.median(api), 3),
            "cli_median_s": round(statistics.median(cli), 3), "same_json_keys": same_keys}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="guestlab-seat-bench-")
    images = os.environ.get("GUESTLAB_IMAGES") or str(Path.home() / ".local/state/guestlab/images")
    os.environ.update(GUESTLAB_HOME=home, GUESTLAB_IMAGES=images)
    ids = [f"seat{i:02d}" for i in range(args.students)]
    roster = Path(home) / "class.csv"
    roster.write_text("id,name,email\n" + "".join(f"{s},{s},\n" for s in ids))
    result: dict[str, Any] = {"host": platform.node(), "students": args.students}
    started = time.perf_counter()
    guestlab(
        "class",
        "up",
        SCENARIO,
        "--roster",
        str(roster),
        "--parallel",
        str(args.parallel),
        "--backend",
        "docker",
    )
    result["class_up_s"] = round(time.perf_counter() - started, 1)
    serve = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "serve", "--port", "0",
                              "--max-terminals", "8"], stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        assert serve.stdout is not None
        base = serve.stdout.readline().split(" ", 1)[1].strip().partition("/?token=")[0]
        links = json.loads(
            guestlab("class", "links", SCENARIO, "--base-url", base, "--format", "json").stdout
        )
        tokens = {r["student"]: r["token"] for r in links}
        first = ids[0]
        container = f"gl-{SCENARIO}--{first}-guest"
        ws = asyncio.run(ws_latency(base, tokens[first], args.samples))
        ex = asyncio.run(exec_latency(container, args.samples))
        result["keystroke"] = {"websocket": summary(ws), "docker_exec_it": summary(ex)}
        result["serve_rss_kib_before"] = rss_kib(serve.pid)
        result["load"] = asyncio.run(hold_terminals(base, [tokens[s] for s in ids], serve.pid, 20))
        result["check"] = check_times(base, tokens[first], first, 5)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        guestlab("class", "down", SCENARIO, check=False)
    out = ROOT / "bench" / "results" / "seat-docker.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
