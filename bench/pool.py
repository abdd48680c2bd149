"""Warm labs: cold `up` against a pool claim, and each command's start-up.

For each backend and lab: `up --no-pool` (cold) and `up` from a pool of one (the claim;
the background refill is waited for before the next round), wall time of the whole
command, start-up included, with the engine steps the claim ran (from the state store);
then `reset` of the cold lab and of the claimed one (which runs the student's steps and
the clones again), each followed by a check that must fail. Then the start-up of light
commands against `python -c pass`. Runs in a state directory of its own. Writes
bench/results/pool.json.

    python bench/pool.py [--backend docker --backend lxd] [--scenario machine-id-inspect] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUESTLAB = [sys.executable, "-m", "orchestrator.cli"]
STARTUP = [["--help"], ["list"], ["status"], ["pool", "status"], ["check", "none", "-s", "nobody"]]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*GUESTLAB, *args], capture_output=True, text=True, cwd=ROOT)
    if check and proc.returncode != 0:
        raise SystemExit(f"guestlab {' '.join(args)} failed: {proc.stderr[-800:]}")
    return proc


def timed(*args: str) -> float:
    started = time.perf_counter()
    run(*args)
    return time.perf_counter() - started


def pool_row(scenario: str, backend: str) -> dict[str, int]:
    rows = json.loads(run("pool", "status", scenario, "--format", "json").stdout)
    return next((r for r in rows if r["backend"] == backend), {})


def filled(row: dict[str, int]) -> bool:
    """Whether a `pool status` row has a ready lab and no refill under way."""
    return row.get("ready", 0) >= 1 and row.get("filling") == 0


def wait_ready(scenario: str, backend: str, limit: float = 900) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if filled(pool_row(scenario, backend)):
            return
        time.sleep(1)
    raise SystemExit(f"the pool of {scenario} on {backend} never refilled")


def claim_steps(scenario: str, student: str, since: float) -> dict[str, float]:
    """Seconds of each engine step the claim ran (the lab's steps recorded since `since`)."""
    sys.path.insert(0, str(ROOT))  # this tree's guestlab, as the commands run it
    from orchestrator.state import Store

    (rec,) = json.loads(run("status", scenario, "-s", student, "--format", "json").stdout)
    steps = [e for e in Store().events(rec["key"]) if e["kind"] == "step" and e["at"] >= since]
    return {e["step"]: e.get("seconds", 0.0) for e in steps}


def measure(backend: str, scenario: str, rounds: int) -> dict[str, list[float]]:
    keys = ("cold_up", "claim_up", "fill_one", "cold_reset", "claimed_reset")
    times: dict[str, list[float]] = {k: [] for k in keys}
    times["fill_one"].append(timed("pool", "fill", scenario, "--size", "1", "-b", backend))
    for n in range(rounds):
        cold, warm = f"cold{n}", f"warm{n}"
        times["cold_up"].append(timed("up", scenario, "-s", cold, "-b", backend, "--no-pool"))
        wait_ready(scenario, backend)
        since = time.time()
        times["claim_up"].append(timed("up", scenario, "-s", warm, "-b", backend))
        for step, seconds in claim_steps(scenario, warm, since).items():
            times.setdefault(f"claim_step_{step}", []).append(seconds)
        assert run("check", scenario, "-s", warm, check=False).returncode == 1
        wait_ready(scenario, backend)
        for student, name in ((cold, "cold_reset"), (warm, "claimed_reset")):
            times[name].append(timed("reset", scenario, "-s", student))
            assert run("check", scenario, "-s", student, check=False).returncode == 1
        for student in (cold, warm):
            run("down", scenario, "-s", student)
    run("pool", "drain", scenario)
    return times


def startup(rounds: int) -> dict[str, float]:
    """Median seconds of each light command, and of a bare interpreter."""
    out = {}
    started = [sys.executable, "-c", "pass"]
    for argv, name in [(started, "python -c pass")] + [
        ([*GUESTLAB, *a], "guestlab " + " ".join(a)) for a in STARTUP
    ]:
        subprocess.run(argv, capture_output=True, cwd=ROOT)  # warm the page cache and list's
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            subprocess.run(argv, capture_output=True, cwd=ROOT)
            samples.append(time.perf_counter() - t)
        out[name] = round(statistics.median(samples), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append")
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="pool.json", help="file name under bench/results")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="guestlab-bench-")
    os.environ.setdefault("GUESTLAB_IMAGES", str(Path.home() / ".local/state/guestlab/images"))
    os.environ["GUESTLAB_HOME"] = home
    load = os.getloadavg()
    result: dict[str, object] = {
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} cpus",
        "load_at_start": [round(x, 1) for x in load],
        "startup": startup(max(5, args.rounds)),
        "labs": {},
    }
    print(json.dumps(result["startup"]), file=sys.stderr)
    labs: dict[str, object] = {}
    for backend in args.backend or ["docker", "lxd"]:
        for scenario in args.scenario or ["machine-id-inspect", "machine-id-clone"]:
            times = measure(backend, scenario, args.rounds)
            labs[f"{backend}/{scenario}"] = {
                k: {"median": round(statistics.median(v), 2), "all": [round(x, 2) for x in v]}
                for k, v in times.items()
            }
            print(
                f"{backend}/{scenario}: {json.dumps(labs[f'{backend}/{scenario}'])}",
                file=sys.stderr,
            )
            # written after each lab: a later failure keeps what was measured
            result["labs"] = labs
            result["load_at_end"] = [round(x, 1) for x in os.getloadavg()]
            out = ROOT / "bench" / "results" / args.out
            out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
