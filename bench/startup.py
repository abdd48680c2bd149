"""Start-up of each `guestlab` command against a bare `python -c pass`, in the same run.

Each round runs, for every command, `python -c pass` and then the command, so both see
the same load; the order of the commands is shuffled per round. Wall time of the whole
process (`python -m orchestrator.cli ...` from this tree, stdout and stderr discarded).

No command talks to an engine: `status`, `hint` and `check` run against a state store made
here, holding one lab of machine-id-clone on Docker whose `up` stopped while provisioning.
`hint` then does all its work (it never needs the engine); `check` opens the store, the
scenario and the lab and stops at its first step, refusing a lab that is not up, which
comes before its first engine call: that is check's own start-up. `check (no lab)` is the
same against an empty store (it stops after opening the store). The scenario caches are
warmed by one untimed run of each command first, and the package is byte-compiled first
(`compileall`), as an installed guestlab is: with PYTHONDONTWRITEBYTECODE set, a source
tree would otherwise compile every module of guestlab on every run.

Writes bench/results/startup.json.

    python bench/startup.py [--rounds 15] [--out bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "machine-id-clone"
#: label -> (arguments, which state store: "lab" or "empty")
COMMANDS: dict[str, tuple[list[str], str]] = {
    "--help": (["--help"], "lab"),
    "list": (["list"], "lab"),
    "status": (["status"], "lab"),
    f"show {SCENARIO}": (["show", SCENARIO], "lab"),
    f"hint {SCENARIO} find-id": (["hint", SCENARIO, "find-id"], "lab"),
    "check --help": (["check", "--help"], "lab"),
    f"check {SCENARIO} (lab not up)": (["check", SCENARIO], "lab"),
    f"check {SCENARIO} (no lab)": (["check", SCENARIO], "empty"),
}


def make_store(home: Path) -> None:
    """A state store with one lab of SCENARIO on Docker, left at `provisioning`."""
    code = f"""
from orchestrator.lab import prepare
from orchestrator.state import Store
lab = prepare({SCENARIO!r}, "bench", "docker")
Store().put_lab(lab.ref.key, scenario=lab.ref.scenario, student="bench", backends=["docker"],
    scenario_path=str(lab.path.resolve()), params=lab.params, status="provisioning")
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(home), check=True)


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "GUESTLAB_HOME": str(home), "GUESTLAB_STUDENT": "bench"}


def timed(argv: list[str], home: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        argv, cwd=ROOT, env=env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args()
    bare = [sys.executable, "-c", "pass"]
    cli = [sys.executable, "-m", "orchestrator.cli"]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "orchestrator")], check=True
    )
    with tempfile.TemporaryDirectory(prefix="guestlab-startup-") as tmp:
        homes = {"lab": Path(tmp) / "lab", "empty": Path(tmp) / "empty"}
        make_store(homes["lab"])
        for cmd, which in COMMANDS.values():  # warm the caches and the page cache
            timed([*cli, *cmd], homes[which])
        times: dict[str, dict[str, list[float]]] = {
            label: {"command": [], "bare": []} for label in COMMANDS
        }
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            labels = list(COMMANDS)
            random.shuffle(labels)
            for label in labels:
                cmd, which = COMMANDS[label]
                times[label]["bare"].append(timed(bare, homes[which]))
                times[label]["command"].append(timed([*cli, *cmd], homes[which]))
    results = {}
    for label, t in times.items():
        med, bare_med = statistics.median(t["command"]), statistics.median(t["bare"])
        results[label] = {
            "median_s": round(med, 4),
            "p90_s": round(p90(t["command"]), 4),
            "bare_median_s": round(bare_med, 4),
            "bare_p90_s": round(p90(t["bare"]), 4),
            "over_bare_s": round(med - bare_med, 4),
        }
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "commands": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"{'command':40} {'median':>7} {'p90':>7} {'bare':>7} {'over':>7}")
    for label, r in results.items():
        print(
            f"{label:40} {r['median_s']:7.3f} {r['p90_s']:7.3f} "
            f"{r['bare_median_s']:7.3f} {r['over_bare_s']:+7.3f}"
        )


if __name__ == "__main__":
    main()
