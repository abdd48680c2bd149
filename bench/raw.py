"""The same machines by hand with each engine's own CLI, as an engineer would script them.

Each class does for one lab what guestlab does: create the scenario's machines with its
limits, copy its files, run its setup, take its clones, save the starting state (`up`);
run every check's probe (`check`); go back to the starting state (`reset`); remove it all
(`down`). Nothing here is guestlab code except reading the rendered scenario.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from orchestrator import backends
from orchestrator.backends.docker.cgroups import delegate
from orchestrator.backends.docker.confine import BOOT_FLAG, HOLD_THEN_BOOT
from orchestrator.backends.docker.seccomp import PROFILE as SECCOMP
from orchestrator.backends.nspawn.store import is_subvolume, store_root
from orchestrator.checks import probes
from orchestrator.lab import Lab
from orchestrator.scenario.load import source_path


def sh(argv: list[str], *, check: bool = True, stdin: Any = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def wait_running(exec_prefix: list[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        out = sh([*exec_prefix, "systemctl", "is-system-running"], check=False).strip()
        if out in ("running", "degraded"):
            return
        time.sleep(0.25)
    raise RuntimeError("systemd did not come up")


class Raw:
    def __init__(self, lab: Lab, tag: str) -> None:
        self.lab, self.tag = lab, tag

    def name(self, machine: str) -> str:
        return f"raw{self.tag}-{machine}"

    def exec_prefix(self, machine: str) -> list[str]:
        raise NotImplementedError

    def check(self) -> None:
        for task in self.lab.scenario.tasks:
            for c in task.checks:
                for p in probes(c):
                    sh([*self.exec_prefix(p.machine), *p.argv], check=False)

    def setup(self) -> None:
        for step in self.lab.scenario.setup:
            sh([*self.exec_prefix(step.machine), "sh", "-c", step.run])


class RawDocker(Raw):
    def exec_prefix(self, machine: str) -> list[str]:
        return ["docker", "exec", self.name(machine)]

    def run(self, machine: str, image: str) -> None:
        spec = self.lab.spec(machine)
        sh(["docker", "run", "-d", "--name", self.name(machine), "--hostname", spec.hostname or machine,
            "--network", f"raw{self.tag}", "--memory", str(spec.memory), "--memory-swap", str(spec.memory),
            "--cpus", str(spec.cpus), "--pids-limit", str(spec.pids), "--cap-add", "SYS_ADMIN",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            "--cgroupns", "private", "-e", "container=docker", "--storage-opt", f"size={spec.disk}",
            *(["--security-opt", f"seccomp={SECCOMP}"] if SECCOMP.is_file() else []),
            "--stop-signal", "SIGRTMIN+3", image, "/bin/sh", "-c", HOLD_THEN_BOOT])  # fmt: skip
        # in a user namespace systemd needs its cgroup folders: chown them, then boot
        pid = sh(["docker", "inspect", "-f", "{{.State.Pid}}", self.name(machine)]).strip()
        delegate(int(pid))
        sh([*self.exec_prefix(machine), "touch", BOOT_FLAG])
        wait_running(self.exec_prefix(machine))

    def up(self) -> None:
        lab = self.lab
        sh(["docker", "network", "create", "--internal", f"raw{self.tag}"])
        for m in lab.originals:
            self.run(m.name, f"guestlab/{lab.spec(m.name).image}:latest")
            for f in m.files:
                src = source_path(lab.path, lab.scenario, f.src)
                sh(["docker", "cp", str(src), f"{self.name(m.name)}:{f.dest}"])
        self.setup()
        for m in lab.clones:
            image = f"raw{self.tag}:{m.name}-clone"
            sh(["docker", "commit", self.name(m.clone_of or ""), image])
            self.run(m.name, image)
        for s in lab.specs:
            sh(["docker", "commit", self.name(s.name), f"raw{self.tag}:{s.name}-start"])

    def reset(self) -> None:
        for s in self.lab.specs:
            sh(["docker", "rm", "-f", self.name(s.name)])
            self.run(s.name, f"raw{self.tag}:{s.name}-start")

    def down(self) -> None:
        sh(["docker", "rm", "-f", *[self.name(s.name) for s in self.lab.specs]])
        sh(["docker", "network", "rm", f"raw{self.tag}"])
        tags = sh(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"raw{self.tag}"]
        ).split()
        # the snapshots first: a clone's snapshot is a child of the clone's image
        tags.sort(key=lambda t: not t.endswith("-start"))
        if tags:
            sh(["docker", "rmi", *tags])


class RawLxd(Raw):
    def __init__(self, lab: Lab, tag: str) -> None:
        super().__init__(lab, tag)
        backend = backends.get("lxd")
        backend.availability()
        self.pool = str(backend.pool)  # the same storage pool as guestlab's machines

    def exec_prefix(self, machine: str) -> list[str]:
        return ["lxc", "exec", self.name(machine), "--"]

    def start(self, machine: str) -> None:
        sh(["lxc", "start", self.name(machine)])
        wait_running(self.exec_prefix(machine))

    def up(self) -> None:
        lab = self.lab
        for m in lab.originals:
            spec = lab.spec(m.name)
            # the default profile here holds only a root disk (no network), like guestlab's
            sh(["lxc", "init", f"guestlab/{spec.image}", self.name(m.name),
                "-c", f"limits.memory={spec.memory // 1024**2}MiB", "-c", f"limits.cpu={int(spec.cpus)}",
                "-c", f"limits.processes={spec.pids}", "-s", self.pool])  # fmt: skip
            self.start(m.name)
            for f in m.files:
                src = source_path(lab.path, lab.scenario, f.src)
                sh(["lxc", "file", "push", str(src), f"{self.name(m.name)}{f.dest}"])
        self.setup()
        for m in lab.clones:
            sh(["lxc", "copy", self.name(m.clone_of or ""), self.name(m.name), "-s", self.pool])
            self.start(m.name)
        for s in lab.specs:
            sh(["lxc", "snapshot", self.name(s.name), "start"])

    def reset(self) -> None:
        for s in self.lab.specs:
            sh(["lxc", "restore", self.name(s.name), "start"])
        for s in self.lab.specs:
            wait_running(self.exec_prefix(s.name))

    def down(self) -> None:
        sh(["lxc", "delete", "-f", *[self.name(s.name) for s in self.lab.specs]])


class RawNspawn(Raw):
    """systemd-nspawn by hand, confined as guestlab confines it: private users, a btrfs
    snapshot per machine where the pool is btrfs, nsenter (user namespace included)."""

    def __init__(self, lab: Lab, tag: str) -> None:
        super().__init__(lab, tag)
        self.store = store_root()
        self.root = self.store / "raw" / tag
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: dict[str, int] = {}

    def exec_prefix(self, machine: str) -> list[str]:
        return ["nsenter", "-t", str(self.pids[machine]), "-a"]

    def tree(self, machine: str, what: str = "rootfs") -> Path:
        return self.root / machine / what

    def start(self, machine: str) -> None:
        proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--private-network", "--quiet",
             "--private-users=pick", "--private-users-chown",
             f"--machine={self.name(machine)}", "-D", str(self.tree(machine)), "--boot"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs[machine] = proc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for child in _children(proc.pid):
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    self.pids[machine] = child
                    wait_running(self.exec_prefix(machine))
                    return
            time.sleep(0.05)
        raise RuntimeError("nspawn did not start")

    def copy(self, src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if is_subvolume(src):
            sh(["btrfs", "-q", "subvolume", "snapshot", str(src), str(dest)])
        else:
            sh(["cp", "-a", "--reflink=auto", str(src), str(dest)])

    def up(self) -> None:
        lab = self.lab
        base = self.store / "images"
        for m in lab.originals:
            spec = lab.spec(m.name)
            self.copy(base / spec.image, self.tree(m.name))
            (self.tree(m.name) / "etc/hostname").write_text(f"{spec.hostname}\n")
            for f in m.files:
                dest = self.tree(m.name) / f.dest.lstrip("/")
                shutil.copyfile(source_path(lab.path, lab.scenario, f.src), dest)
            self.start(m.name)
        self.setup()
        for m in lab.clones:
            self.copy(self.tree(m.clone_of or ""), self.tree(m.name))
            (self.tree(m.name) / "etc/hostname").write_text(f"{lab.spec(m.name).hostname}\n")
            self.start(m.name)
        for s in lab.specs:
            self.copy(self.tree(s.name), self.tree(s.name, "snapshot"))

    def stop(self, machine: str) -> None:
        proc = self.procs.pop(machine)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def reset(self) -> None:
        for s in self.lab.specs:
            self.stop(s.name)
            self.remove(self.tree(s.name))
            self.copy(self.tree(s.name, "snapshot"), self.tree(s.name))
            self.start(s.name)

    def remove(self, path: Path) -> None:
        if is_subvolume(path):
            sh(["btrfs", "-q", "subvolume", "delete", str(path)])
        else:
            shutil.rmtree(path)

    def down(self) -> None:
        for s in self.lab.specs:
            self.stop(s.name)
            for what in ("rootfs", "snapshot"):
                self.remove(self.tree(s.name, what))
        shutil.rmtree(self.root)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


RAW = {"docker": RawDocker, "lxd": RawLxd, "nspawn": RawNspawn}
