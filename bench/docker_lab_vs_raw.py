"""guestlab's up/check/down of a lab against the raw docker CLI doing the same work.

Interleaved rounds in one run; prints a table and writes bench/results/docker-lab.json.
Usage: python bench/docker_lab_vs_raw.py [--rounds 3] [--scenario machine-id-clone]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from orchestrator import lab as lifecycle
from orchestrator.backends.docker import image_ref
from orchestrator.checks import probes
from orchestrator.scenario.load import source_path

ROOT = Path(__file__).resolve().parent.parent
GUESTLAB = [sys.executable, "-m", "orchestrator.cli"]


def sh(argv: list[str], *, any_exit: bool = False) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if not any_exit and proc.returncode not in (0, 1):
        raise SystemExit(f"bench: {shlex.join(argv)} failed: {proc.stderr}")
    return proc.stdout


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Raw:
    """The same containers by hand with the docker CLI, as an engineer would script it."""

    def __init__(self, lab: lifecycle.Lab, tag: str) -> None:
        self.lab, self.tag = lab, tag
        self.net = f"raw-{tag}"

    def name(self, machine: str) -> str:
        return f"raw-{self.tag}-{machine}"

    def run(self, spec, image: str) -> None:  # type: ignore[no-untyped-def]
        sh(
            [
                "docker",
                "run",
                "-d",
                "--name",
                self.name(spec.name),
                "--hostname",
                spec.hostname,
                "--network",
                self.net,
                "--memory",
                str(spec.memory),
                "--memory-swap",
                str(spec.memory),
                "--cpus",
                str(spec.cpus),
                "--pids-limit",
                str(spec.pids),
                "--cap-add",
                "SYS_ADMIN",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                "--tmpfs",
                "/tmp",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:ro",
                "-e",
                "container=docker",
                "--stop-signal",
                "SIGRTMIN+3",
                image,
                "/lib/systemd/systemd",
            ]
        )
        while sh(
            ["docker", "exec", self.name(spec.name), "systemctl", "is-system-running"]
        ).strip() not in ("running", "degraded"):
            time.sleep(0.25)

    def up(self) -> None:
        lab = self.lab
        sh(["docker", "network", "create", "--internal", self.net])
        for m in lab.originals:
            spec = lab.spec(m.name)
            self.run(spec, image_ref(spec.image))
            for f in m.files:
                src = source_path(lab.path, lab.scenario, f.src)
                sh(["docker", "cp", str(src), f"{self.name(m.name)}:{f.dest}"])
        for step in lab.scenario.setup:
            sh(["docker", "exec", self.name(step.machine), "sh", "-c", step.run])
        for m in lab.clones:
            img = f"raw-{self.tag}:{m.name}-clone"
            sh(["docker", "commit", self.name(m.clone_of), img])
            self.run(lab.spec(m.name), img)
        for spec in lab.specs:
            sh(["docker", "commit", self.name(spec.name), f"raw-{self.tag}:{spec.name}-start"])

    def check(self) -> None:
        for task in self.lab.scenario.tasks:
            for c in task.checks:
                for p in probes(c):
                    sh(["docker", "exec", self.name(p.machine), *p.argv], any_exit=True)

    def down(self) -> None:
        sh(["docker", "rm", "-f", *[self.name(s.name) for s in self.lab.specs]])
        sh(["docker", "network", "rm", self.net])
        images = sh(["docker", "images", "-q", f"raw-{self.tag}"]).split()
        sh(["docker", "rmi", "-f", *images])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenario", default="machine-id-clone")
    args = ap.parse_args()
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "guestlab up",
            "raw up",
            "guestlab check",
            "raw check",
            "guestlab down",
            "raw down",
        )
    }
    for n in range(args.rounds):
        student = f"bench{n}"
        lab = lifecycle.prepare(args.scenario, student, "docker")
        raw = Raw(lab, f"{n}")
        pairs = [
            (
                verb,
                functools.partial(sh, [*GUESTLAB, verb, args.scenario, "--student", student]),
                fn,
            )
            for verb, fn in (("up", raw.up), ("check", raw.check), ("down", raw.down))
        ]
        for verb, ours, theirs in pairs:
            # alternate which goes first, so that neither always meets a warm engine
            order = [("guestlab", ours), ("raw", theirs)]
            for who, fn in order if n % 2 == 0 else reversed(order):
                times[f"{who} {verb}"].append(timed(fn))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    helps = [timed(lambda: sh([*GUESTLAB, "--help"])) for _ in range(10)]
    bare = [timed(lambda: sh([sys.executable, "-c", "pass"])) for _ in range(10)]
    result = {
        "scenario": args.scenario,
        "rounds": args.rounds,
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "spread_s": {k: [round(min(v), 3), round(max(v), 3)] for k, v in times.items()},
        "ratio": {
            verb: round(
                statistics.median(times[f"guestlab {verb}"])
                / statistics.median(times[f"raw {verb}"]),
                2,
            )
            for verb in ("up", "check", "down")
        },
        "help_s": round(statistics.median(helps), 3),
        "python_startup_s": round(statistics.median(bare), 3),
    }
    out = ROOT / "bench" / "results" / "docker-lab.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| step | guestlab (s) | raw docker (s) | ratio |\n|---|---|---|---|")
    for verb in ("up", "check", "down"):
        g, r = result["median_s"][f"guestlab {verb}"], result["median_s"][f"raw {verb}"]
        print(f"| {verb} | {g} | {r} | {result['ratio'][verb]} |")
    print(
        f"\n`guestlab --help`: {result['help_s']} s"
        f" (bare Python start: {result['python_startup_s']} s)"
    )


if __name__ == "__main__":
    main()
