"""Start-up of each `guestlab` command against a bare `python -c pass`, in the same run.

Each round runs, for every command, `python -c pass` and then the command, so both see
the same load; the order of the commands is shuffled per round. Medians and p90 over the
rounds. Wall time of the whole
process (`python -m orchestrator.cli ...` from this tree, stdout and stderr discarded),
and its CPU time (user + system, from the rusage of the child), which other processes on
a busy host disturb much less than the wall time.

No command talks to an engine: `status`, `hint` and `check` run against a state store made
here, holding one lab of machine-id-clone on Docker whose `up` stopped while provisioning.
`hint` then does all its work (it never needs the engine); `check` opens the store, the
scenario and the lab and stops at its first step, refusing a lab that is not up, which
comes before its first engine call: that is check's own start-up. `check (no lab)` is the
same against an empty store (it stops after opening the store). The scenario caches are
warmed by one untimed run of each command first, and the package is byte-compiled first
(`compileall`), as an installed guestlab is: with PYTHONDONTWRITEBYTECODE set, a source
tree would otherwise compile every module of guestlab on every run.

With `--before DIR` (a source tree of an earlier guestlab, e.g. from `git archive`) the
same commands of that tree run in the same rounds, shuffled with this tree's, so that a
before/after comparison sees the same load. Writes bench/results/startup.json.

    python bench/startup.py [--rounds 15] [--before DIR] [--out bench/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
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


def make_store(tree: Path, home: Path) -> None:
    """A state store with one lab of SCENARIO on Docker, left at `provisioning`."""
    code = f"""
from orchestrator.lab import prepare
from orchestrator.state import Store
lab = prepare({SCENARIO!r}, "bench", "docker")
Store().put_lab(lab.ref.key, scenario=lab.ref.scenario, student="bench", backends=["docker"],
    scenario_path=str(lab.path.resolve()), params=lab.params, status="provisioning")
"""
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env(home), check=True)


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "GUESTLAB_HOME": str(home), "GUESTLAB_STUDENT": "bench"}


def timed(argv: list[str], tree: Path, home: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        argv, cwd=tree, env=env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def summary(t: dict[str, list[float]]) -> dict[str, float]:
    med, bare_med = statistics.median(t["command"]), statistics.median(t["bare"])
    cpu, bare_cpu = statistics.median(t["command_cpu"]), statistics.median(t["bare_cpu"])
    return {
        "median_s": round(med, 4),
        "p90_s": round(p90(t["command"]), 4),
        "bare_median_s": round(bare_med, 4),
        "bare_p90_s": round(p90(t["bare"]), 4),
        "over_bare_s": round(med - bare_med, 4),
        "cpu_median_s": round(cpu, 4),
        "cpu_over_bare_s": round(cpu - bare_cpu, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    parser.add_argument(
        "--before",
        type=Path,
        help="another source tree of guestlab (e.g. `git archive` of an earlier commit), "
        "measured in the same rounds",
    )
    args = parser.parse_args()
    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    bare = [sys.executable, "-c", "pass"]
    cli = [sys.executable, "-m", "orchestrator.cli"]
    series = ("command", "bare", "command_cpu", "bare_cpu")
    times = {(name, label): {s: [] for s in series} for name in trees for label in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="guestlab-startup-") as tmp:
        homes = {}
        for name, tree in trees.items():
            compiled = [sys.executable, "-m", "compileall", "-q", str(tree / "orchestrator")]
            subprocess.run(compiled, check=True)
            homes[name] = {"lab": Path(tmp) / name / "lab", "empty": Path(tmp) / name / "empty"}
            make_store(tree, homes[name]["lab"])
            for cmd, which in COMMANDS.values():  # warm the caches and the page cache
                timed([*cli, *cmd], tree, homes[name][which])
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            runs = list(times)
            random.shuffle(runs)
            for name, label in runs:
                cmd, which = COMMANDS[label]
                home = homes[name][which]
                for kind, argv in (("bare", bare), ("command", [*cli, *cmd])):
                    wall, cpu = timed(argv, trees[name], home)
                    times[name, label][kind].append(wall)
                    times[name, label][f"{kind}_cpu"].append(cpu)
    results = {name: {label: summary(times[name, label]) for label in COMMANDS} for name in trees}
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "trees": {name: str(tree) for name, tree in trees.items()},
        "load_average_at_start": round(load, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "commands": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(
        f"{'command':40} {'tree':6} {'median':>7} {'p90':>7} {'bare':>7} {'over':>7}"
        f" {'cpu':>7} {'cpu over':>8}"
    )
    for label in COMMANDS:
        for name in trees:
            r = results[name][label]
            print(
                f"{label:40} {name:6} {r['median_s']:7.3f} {r['p90_s']:7.3f} "
                f"{r['bare_median_s']:7.3f} {r['over_bare_s']:+7.3f}"
                f" {r['cpu_median_s']:7.3f} {r['cpu_over_bare_s']:+8.3f}"
            )


if __name__ == "__main__":
    main()
