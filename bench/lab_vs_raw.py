"""guestlab against each engine's own CLI doing the same machines, in one run.

For every backend and scenario asked for: `up`, `check`, `reset`, `down` through the
`guestlab` command, interleaved with bench/raw.py doing the same work by hand; several
rounds, median and spread, and the ratio guestlab / raw as the headline. Also the CLI's
start-up and `validate` of the library.

    python bench/lab_vs_raw.py [--backend docker --backend lxd ...] [--scenario ID ...] [--rounds 3]

Without --scenario, every library lab in LABS that the backend runs.

Writes bench/results/lab-vs-raw.json (or --out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from raw import RAW
from raw_vagrant import RawVagrant

from orchestrator import backends
from orchestrator import lab as lifecycle
from orchestrator.scenario.catalog import resolve
from orchestrator.scenario.load import load_file

ROOT = Path(__file__).resolve().parent.parent
GUESTLAB = [sys.executable, "-m", "orchestrator.cli"]
VERBS = ("up", "check", "reset", "down")
RAW["vagrant"] = RawVagrant  # raw_vagrant imports raw: registered here, not there
#: the library labs a raw script can build by hand on each backend: plain system
#: containers, or one VM. Left out: the nested labs (docker-basics, lxd-first-container,
#: nspawn-machine), whose engine settings a script could only copy from guestlab, and
#: vm-or-container, which needs two engines at once.
CONTAINER_LABS = [
    "machine-id-clone", "machine-id-inspect", "ssh-host-keys-clone", "template-seal",
    "cloud-init-user-data",
]  # fmt: skip
LABS = {"docker": CONTAINER_LABS, "lxd": CONTAINER_LABS, "nspawn": CONTAINER_LABS,
        "vagrant": ["guest-drivers"]}  # fmt: skip


def guestlab(*args: str) -> None:
    proc = subprocess.run([*GUESTLAB, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 1):  # 1: checks failed, expected on a fresh lab
        raise SystemExit(f"bench: guestlab {' '.join(args)} failed: {proc.stderr}")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(backend: str, scenario: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {f"{who} {v}": [] for v in VERBS for who in ("guestlab", "raw")}
    for n in range(rounds):
        student = f"bench{n}"
        lab = lifecycle.prepare(scenario, student, backend)
        raw = RAW[backend](lab, str(n))
        for verb in VERBS:
            # the raw side reboots nothing: guestlab's check is taken without its reboot too
            extra = {"up": ["--backend", backend], "check": ["--no-reboot"]}.get(verb, [])
            ours = functools.partial(guestlab, verb, scenario, "--student", student, *extra)
            pair = [("guestlab", ours), ("raw", getattr(raw, verb))]
            # alternate who goes first, so that neither always meets a warm engine
            for who, fn in pair if n % 2 == 0 else reversed(pair):
                times[f"{who} {verb}"].append(timed(fn))
        print(f"{backend}/{scenario}: round {n + 1}/{rounds}", file=sys.stderr)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, object]:
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "spread_s": {k: [round(min(v), 3), round(max(v), 3)] for k, v in times.items()},
        "ratio": {v: round(med[f"guestlab {v}"] / med[f"raw {v}"], 2) for v in VERBS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append", choices=sorted(RAW))
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results" / "lab-vs-raw.json",
        help="where the JSON goes (a partial run should not replace the full table's)",
    )
    args = ap.parse_args()
    chosen = args.backend or [b for b in RAW if backends.get(b).availability().usable]
    out = args.out
    results: dict[str, object] = {
        "machine": f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}",
        "rounds": args.rounds,
        "labs": {},
    }
    for backend in chosen:
        for scenario in args.scenario or LABS[backend]:
            if backend not in load_file(resolve(scenario)).backends:
                continue  # asked for with --scenario, but not a lab this backend runs
            results["labs"][f"{backend}/{scenario}"] = summary(
                measure(backend, scenario, args.rounds)
            )  # type: ignore[index]
            # written after every lab: a long run interrupted keeps what it measured
            out.write_text(json.dumps(results, indent=2) + "\n")
    start = {
        "guestlab --help": [timed(lambda: guestlab("--help")) for _ in range(10)],
        "guestlab list": [timed(lambda: guestlab("list")) for _ in range(5)],
        "guestlab validate scenarios": [
            timed(lambda: guestlab("validate", "scenarios")) for _ in range(5)
        ],
        "python -c pass": [
            timed(lambda: subprocess.run([sys.executable, "-c", "pass"])) for _ in range(10)
        ],
    }
    results["cli_s"] = {k: round(statistics.median(v), 3) for k, v in start.items()}
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| lab | step | guestlab (s) | raw (s) | ratio |\n|---|---|---|---|---|")
    for name, r in results["labs"].items():  # type: ignore[attr-defined]
        for v in VERBS:
            g, w = r["median_s"][f"guestlab {v}"], r["median_s"][f"raw {v}"]
            print(f"| {name} | {v} | {g} | {w} | {r['ratio'][v]} |")
    for k, v in results["cli_s"].items():  # type: ignore[attr-defined]
        print(f"- {k}: {v} s")


if __name__ == "__main__":
    main()
