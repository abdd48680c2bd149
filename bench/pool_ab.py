"""Pool claims of two trees of guestlab, interleaved: which one claims faster.

Each tree gets its own state store and a pool of one per scenario; claims alternate
between the trees, each after both pools are full again, with the 1-minute load average
noted before each. Wall time of the whole `guestlab up`, start-up included. The base tree
is a commit unpacked with `git archive`; the other is this working tree.

    git archive eef80b6 | tar -x -C /tmp/base
    python bench/pool_ab.py --base /tmp/base [--backend lxd] [--rounds 3] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pool import filled  # bench/, this script's folder, is first on sys.path

ROOT = Path(__file__).resolve().parent.parent
STEP = re.compile(r"(starting state applied|clones taken) \(([\d.]+) s\)")


class Tree:
    """One tree of guestlab with a state store of its own (the images are shared)."""

    def __init__(self, name: str, path: Path, home: Path) -> None:
        self.name, self.path = name, path
        images = Path.home() / ".local/state/guestlab/images"  # as bench/pool.py shares them
        self.env = {
            **os.environ,
            "GUESTLAB_HOME": str(home),
            "GUESTLAB_IMAGES": os.environ.get("GUESTLAB_IMAGES", str(images)),
            "COLUMNS": "200",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"{self.name}: guestlab {' '.join(args)}: {proc.stderr[-800:]}")
        return proc

    def full(self, scenario: str, backend: str) -> bool:
        rows = json.loads(self.run("pool", "status", scenario, "--format", "json").stdout)
        return filled(next((r for r in rows if r["backend"] == backend), {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the other tree")
    parser.add_argument("--backend", default="lxd")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/pool-ab.json")
    parser.add_argument("scenarios", nargs="*", default=["machine-id-inspect", "machine-id-clone"])
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d%H%M%S")
    trees = [
        Tree(name, path, Path(f"/tmp/guestlab-pool-ab-{stamp}-{name}"))
        for name, path in (("base", args.base.resolve()), ("new", ROOT))
    ]
    for tree in trees:
        for scenario in args.scenarios:
            tree.run("pool", "fill", scenario, "--size", "1", "--backend", args.backend)
    rows = []
    try:
        for n in range(args.rounds):
            for scenario in args.scenarios:
                for tree in trees if n % 2 == 0 else trees[::-1]:
                    deadline = time.monotonic() + 300
                    while not all(t.full(scenario, args.backend) for t in trees):
                        if time.monotonic() > deadline:
                            raise SystemExit(f"the pools of {scenario} never filled")
                        time.sleep(1)
                    load = os.getloadavg()[0]
                    started = time.perf_counter()
                    proc = tree.run(
                        "up", scenario, "--student", f"ab{n}", "--backend", args.backend
                    )
                    row = {
                        "tree": tree.name,
                        "scenario": scenario,
                        "round": n,
                        "wall_s": round(time.perf_counter() - started, 3),
                        "load1": round(load, 2),
                        "steps": {m[0]: float(m[1]) for m in STEP.findall(proc.stdout)},
                        "claimed": "from the pool" in proc.stdout,
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        for tree in trees:
            for scenario in args.scenarios:
                tree.run("pool", "drain", scenario, check=False)
                for n in range(args.rounds):
                    tree.run("down", scenario, "--student", f"ab{n}", check=False)
    summary = {
        f"{s}/{t.name}": statistics.median(
            r["wall_s"] for r in rows if r["scenario"] == s and r["tree"] == t.name
        )
        for s in args.scenarios
        for t in trees
    }
    print(json.dumps(summary, indent=1))
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": str(args.base),
        "backend": args.backend,
        "medians_s": summary,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
