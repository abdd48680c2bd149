"""How `class up` and `class check` grow with the class (1, 10, 30 students by default).

For each size: wall time and guestlab's peak memory (max RSS of the command, from
/usr/bin/time), and the memory the class's machines use (their cgroups) once up. With
--hostile, `class check` runs again after one student's clone turned hostile (a 1 GB host
key, a FIFO fed by `yes` as /etc/machine-id, escape codes in what it prints).
Writes bench/results/class-scale-BACKEND.json.

    python bench/class_scale.py [--backend docker] [--sizes 1 10 30] [--parallel 4] [--hostile]
                                [--pool | --cold-and-pool] [--memory 200M]

With --pool, the class's pool is filled first (`pool fill --size N`, timed apart) and
`class up` claims from it; the pool is drained as soon as the class is up, so that the
background refill makes nothing. With --cold-and-pool, each size runs both ways in the same
run (the order alternating from one size to the next), so that the two can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "machine-id-clone"
HOSTILE = (
    "truncate -s 1G /etc/ssh/ssh_host_ed25519_key.pub; rm -f /etc/machine-id; "
    "mkfifo /etc/machine-id; printf '\\033]52;c;cHduZWQ=\\007[/nope]\\n' > /etc/motd; "
    "setsid sh -c 'while :; do yes > /etc/machine-id; done' >/dev/null 2>&1 </dev/null &"
)


def timed(argv: list[str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in KiB) of one guestlab command; a failing command's
    last lines of error output go to this run's own error output, so that its cause is kept."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss=%M", sys.executable, "-m", "orchestrator.cli", *argv],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    rss = re.findall(r"maxrss=(\d+)", proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-20:])
        print(f"guestlab {' '.join(argv[:2])}: exit {proc.returncode}\n{tail}", file=sys.stderr)
    return seconds, proc.returncode, int(rss[-1]) if rss else 0


def machines_memory(backend: str) -> int:
    """Bytes the running lab machines use, summed over their memory cgroups (cgroup v1)."""
    total = 0
    if backend == "docker":
        ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", "label=guestlab.lab"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
        for cid in ids:
            f = Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes")
            total += int(f.read_text()) if f.exists() else 0
    elif backend == "lxd":
        for f in Path("/sys/fs/cgroup/memory").glob("lxc.payload.gl-*/memory.usage_in_bytes"):
            total += int(f.read_text())
    return total


def one_class(args: argparse.Namespace, size: int, pool: bool) -> dict[str, object]:
    """Up, check (and hostile check), down of one class of `size`, cold or from a pool."""
    memory = ["--memory", args.memory] if args.memory else []
    load_before = round(os.getloadavg()[0], 1)
    with tempfile.TemporaryDirectory() as tmp:
        roster = Path(tmp) / "class.csv"
        tag = "p" if pool else "c"
        roster.write_text(
            "id,name,email\n"
            + "".join(f"s{size:02d}{tag}{i:02d},Student {i},\n" for i in range(size))
        )
        fill = (0.0, 0, 0)
        if pool:
            fill = timed(["pool", "fill", SCENARIO, "--size", str(size), "--backend",
                          args.backend, "--parallel", str(args.parallel), *memory])  # fmt: skip
        up = timed(["class", "up", SCENARIO, "--roster", str(roster), "--backend", args.backend,
                    "--parallel", str(args.parallel), *memory,
                    *([] if pool else ["--no-pool"])])  # fmt: skip
        if pool:
            timed(["pool", "drain", SCENARIO])
        used = machines_memory(args.backend)
        check = timed(["class", "check", SCENARIO, "--format", "json"])
        hostile = (0.0, 0, 0)
        if args.hostile:
            first = f"s{size:02d}{tag}00"
            subprocess.run([sys.executable, "-m", "orchestrator.cli", "exec", SCENARIO, "clone",
                            "--student", first, "--", "sh", "-c", HOSTILE],
                           cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
            hostile = timed(["class", "check", SCENARIO, "--format", "json"])
        down = timed(["class", "down", SCENARIO])
    return {
        "students": size, "pool": pool, "fill_s": round(fill[0], 2),
        "fill_peak_rss_mib": round(fill[2] / 1024, 1),
        "up_s": round(up[0], 2), "up_exit": up[1], "up_peak_rss_mib": round(up[2] / 1024, 1),
        "check_s": round(check[0], 2), "check_exit": check[1],
        "check_peak_rss_mib": round(check[2] / 1024, 1),
        "down_s": round(down[0], 2), "down_exit": down[1],
        "hostile_check_s": round(hostile[0], 2), "hostile_check_exit": hostile[1],
        "hostile_check_peak_rss_mib": round(hostile[2] / 1024, 1),
        "machines_memory_mib": round(used / 1024**2, 1),
        "up_s_per_lab": round(up[0] / size, 2),
        "load_before": load_before, "load_after": round(os.getloadavg()[0], 1),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="docker")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--hostile", action="store_true", help="check again with one hostile lab")
    ap.add_argument("--pool", action="store_true", help="fill a pool first; class up claims")
    ap.add_argument("--cold-and-pool", action="store_true",
                    help="each size twice in this run: cold and from a pool (order alternates)")  # fmt: skip
    ap.add_argument("--memory", help="class up --memory (and pool fill --memory)")
    args = ap.parse_args()
    rows = []
    for n, size in enumerate(args.sizes):
        # in one run, who goes first alternates: a warmer page cache favours the second
        modes = (
            ([False, True] if n % 2 == 0 else [True, False]) if args.cold_and_pool else [args.pool]
        )
        for pool in modes:
            rows.append(one_class(args, size, pool))
            print(json.dumps(rows[-1]), file=sys.stderr)
    suffix = "-cold-pool" if args.cold_and_pool else "-pool" if args.pool else ""
    out = ROOT / "bench" / "results" / f"class-scale-{args.backend}{suffix}.json"
    result = {"machine": f"{platform.node()}, {platform.machine()}", "backend": args.backend,
              "parallel": args.parallel, "memory": args.memory, "rows": rows,
              "load_at_end": [round(x, 1) for x in os.getloadavg()]}  # fmt: skip
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| students | from | pool fill (s) | class up (s) | per lab (s) | up peak RSS (MiB)"
          " | class check (s) | check peak RSS (MiB) | class down (s) | machines' memory (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['students']} | {'pool' if r['pool'] else 'cold'} | {r['fill_s']} | {r['up_s']}"
            f" | {r['up_s_per_lab']} | {r['up_peak_rss_mib']} | {r['check_s']}"
            f" | {r['check_peak_rss_mib']} | {r['down_s']} | {r['machines_memory_mib']} |"
        )


if __name__ == "__main__":
    main()
