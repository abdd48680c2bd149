"""Booting, entering and stopping nspawn machines: the process side of the nspawn backend.

Each machine is a directory (``meta.json``, ``rootfs``, ``snapshot``, ``nspawn.log``) and one
systemd-nspawn process booting ``rootfs`` with private users (``--private-users=pick
--private-users-chown``): root in the machine is a high, unprivileged uid on the host, and
the first boot of a tree gives it to that uid range. systemd-nspawn starts under
guestlab's seccomp filter of btrfs volume ioctls (seccomp.py), so that no process of
the machine can make a subvolume outside its disk bound. Commands enter through
execution.py and enter.py with the init's user namespace, capability bounding set and
seccomp filters.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.common import CONTAINER_BOOT_TIMEOUT, wait_for_answer, wait_for_systemd
from orchestrator.backends.contract import MachineSpec, Progress
from orchestrator.backends.nspawn.cgroups import (
    cgroup_pids,
    in_cgroups,
    make_cgroups,
    own_cgroups,
    remove_cgroups,
    thaw_all,
)
from orchestrator.backends.nspawn.execution import launch_argv, run_in_machine
from orchestrator.backends.nspawn.host import (
    IDLE_COMMAND,
    alive,
    container_init,
    live_nspawn,
    nspawn_pids,
    payload_started,
    remove_runtime_leftovers,
    send_signal,
)
from orchestrator.backends.nspawn.machines import save_meta
from orchestrator.backends.nspawn.seccomp import UnsupportedMachine
from orchestrator.errors import MachineUnavailable, ProvisioningError, UsageError
from orchestrator.messages import _

READY_TIMEOUT = CONTAINER_BOOT_TIMEOUT
STOP_GRACE = 15.0  # a clean systemd poweroff takes about 2 s here
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def userns_available() -> bool:
    """Whether this kernel lets systemd-nspawn make user namespaces."""
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        return False


def hostname_of(spec: MachineSpec) -> str:
    """The machine's hostname: its own, which must be valid, else one made of its name
    (a machine called db_1 gets db-1)."""
    hostname = spec.hostname or re.sub(r"[^A-Za-z0-9-]+", "-", spec.name).strip("-")[:63]
    if not _HOSTNAME_RE.fullmatch(hostname):
        raise UsageError(
            _("`{hostname}` is not a valid hostname for machine `{name}`").format(
                hostname=hostname, name=spec.name
            )
        )
    return hostname


def nspawn_argv(
    spec: MachineSpec,
    meta: dict[str, Any],
    rootfs: Path,
    hostname: str,
    progress: Progress,
    *,
    machined: bool,
    private_users: bool,
) -> tuple[list[str], list[str]]:
    """The systemd-nspawn command of the machine, and the cgroups made for it (none on the
    machined route). Records in `meta` which limits hold and the cgroups commands join."""
    argv = [
        "systemd-nspawn",
        "--quiet",
        f"--machine={meta['unit']}",
        f"--hostname={hostname}",
        f"--directory={rootfs}",
        "--private-network",
        "--console=read-only",
        "--link-journal=no",  # nothing of the machine ends up in the host's journal
    ]
    if private_users:
        # the first boot of a tree gives it to the picked range; the same machine keeps
        # its range (the tree's owner) when free, so a restore needs no second chown
        argv += ["--private-users=pick", "--private-users-chown"]
    cgroups: list[str] = []
    if machined:
        argv += [
            f"--property=MemoryMax={spec.memory}",
            f"--property=TasksMax={spec.pids}",
            f"--property=CPUQuota={round(spec.cpus * 100)}%",
        ]
        meta["limits"] = {"memory": True, "cpus": True, "pids": True}
    else:
        argv += ["--register=no", "--keep-unit"]
        cgroups, meta["exec_cgroups"], meta["limits"] = make_cgroups(meta["unit"], spec)
        if not all(meta["limits"].values()):
            missing = ", ".join(k for k, v in meta["limits"].items() if not v)
            progress(
                _("{name}: cannot enforce {missing} on this host (no cgroup for it)").format(
                    name=spec.name, missing=missing
                )
            )
    argv += ["--boot"] if spec.init == "systemd" else ["--as-pid2", *IDLE_COMMAND]
    return argv, cgroups


def start(
    spec: MachineSpec,
    mdir: Path,
    meta: dict[str, Any],
    progress: Progress,
    *,
    machined: bool,
    private_users: bool,
) -> None:
    """Start systemd-nspawn for the machine in the background and record its PID."""
    hostname = hostname_of(spec)
    rootfs = mdir / "rootfs"
    # systemd in the machine takes its hostname from /etc/hostname, over --hostname.
    write_inside(rootfs, "etc/hostname", f"{hostname}\n".encode())
    argv, cgroups = nspawn_argv(
        spec, meta, rootfs, hostname, progress, machined=machined, private_users=private_users
    )
    try:
        # never --template, --ephemeral or --volatile: nspawn then needs no volume ioctl
        argv = launch_argv(argv)
    except (UnsupportedMachine, FileNotFoundError) as exc:
        remove_cgroups(cgroups)
        raise ProvisioningError(
            _("machine `{name}`: {error}").format(name=spec.name, error=exc)
        ) from exc
    meta.update(cgroups=cgroups, nspawn_pid=None, init_pid=None)
    meta["private_users"] = private_users
    save_meta(mdir, meta)
    progress(_("{name}: starting systemd-nspawn").format(name=spec.name))
    with open(mdir / "nspawn.log", "ab") as log:
        proc = subprocess.Popen(
            in_cgroups(cgroups, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives guestlab, and no terminal signal reaches it
        )
    meta["nspawn_pid"] = proc.pid
    meta["started"] = time.time()
    save_meta(mdir, meta)


def wait_ready(spec: MachineSpec, mdir: Path, meta: dict[str, Any], progress: Progress) -> None:
    """Wait for the machine's init to be in place, then for systemd to finish booting
    (common.wait_for_systemd); for `init: none` the idle command started is the answer."""
    what = f"machine `{spec.name}` of lab `{spec.lab.key}`"

    def answers(_timeout: float) -> str | None:
        return None if started_init(spec, mdir, meta) else "no init process yet"

    def state(timeout: float) -> str:
        init = started_init(spec, mdir, meta)
        if init is None:
            return "no init process yet"
        res = run_in_machine(mdir, meta, init, ["systemctl", "is-system-running"], timeout)
        return res.stdout.strip() or res.stderr.strip()[:200]

    try:
        if spec.init != "systemd":
            wait_for_answer(what, answers, timeout=READY_TIMEOUT)
            progress(_("{name}: ready").format(name=spec.name))
        else:
            progress(
                _("{name}: systemd is {what}").format(
                    name=spec.name, what=wait_for_systemd(what, state, timeout=READY_TIMEOUT)
                )
            )
    except (ProvisioningError, MachineUnavailable) as exc:  # the log says why
        raise type(exc)(f"{exc}:\n{tail(mdir / 'nspawn.log')}", hint=exc.hint) from None


def started_init(spec: MachineSpec, mdir: Path, meta: dict[str, Any]) -> int | None:
    """The machine's init once it has exec'd its program (or started the idle command):
    only then are its seccomp filters all in place, and nothing of the machine runs
    before that. None while starting; ProvisioningError when systemd-nspawn exited (the
    caller adds the log's tail)."""
    nspawn = live_nspawn(meta)
    for _try in range(5):  # the cgroup wrapper execs systemd-nspawn within milliseconds
        if nspawn is not None or not alive(meta["nspawn_pid"]):
            break
        time.sleep(0.02)
        nspawn = live_nspawn(meta)
    if nspawn is None:
        if alive(meta["nspawn_pid"]):
            return None
        raise ProvisioningError(
            _("machine `{name}`: systemd-nspawn exited during start-up").format(name=spec.name)
        )
    init = container_init(nspawn, mdir / "rootfs")
    if init is None or not _exec_done(init, nspawn, spec.init):
        return None
    if meta.get("init_pid") != init:
        meta["init_pid"] = init
        save_meta(mdir, meta)
    return init


def running_init(mdir: Path, meta: dict[str, Any]) -> int:
    """The PID of the machine's init, checked to be that machine's, or MachineUnavailable."""
    machine = mdir.name
    lab = meta.get("labels", {}).get("guestlab.lab", mdir.parent.name)
    nspawn = live_nspawn(meta)
    if nspawn is None:
        raise MachineUnavailable(
            _(
                "machine `{machine}` of lab `{lab}` is not running (its"
                " systemd-nspawn process is gone)"
            ).format(machine=machine, lab=lab)
        )
    init = container_init(nspawn, mdir / "rootfs")
    if init is None:
        raise MachineUnavailable(
            _("machine `{machine}` of lab `{lab}` is still starting").format(
                machine=machine, lab=lab
            )
        )
    return init


def stop_all(metas: Sequence[dict[str, Any]], progress: Progress) -> None:
    """Stop machines: a clean poweroff first, SIGKILL for what is left; verify none remain."""
    for meta in metas:
        thaw_all(meta)  # frozen processes cannot act on SIGTERM
        for pid in nspawn_pids(meta):
            # nspawn turns SIGTERM into SIGRTMIN+3 (poweroff) for a booted systemd and
            # into SIGKILL of the payload otherwise.
            progress(_("{name}: stopping").format(name=Path(meta["dir"]).name))
            send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(nspawn_pids(m) for m in metas):
        time.sleep(0.1)
    for _try in range(50):
        left = [pid for m in metas for pid in nspawn_pids(m) + cgroup_pids(m)]
        if not left:
            break
        for pid in left:
            send_signal(pid, signal.SIGKILL)
        time.sleep(0.1)
    else:
        raise ProvisioningError(
            _("processes {left} survived SIGKILL; see `ps -p`").format(left=left)
        )
    for meta in metas:
        if meta.get("route") == "machined":
            # machined may keep a scope of a killed nspawn; ignore "no such machine"
            subprocess.run(
                ["machinectl", "terminate", meta["unit"]], capture_output=True, check=False
            )
        remove_cgroups(own_cgroups(meta))
        remove_runtime_leftovers(meta)
        meta["nspawn_pid"] = meta["init_pid"] = None
        if Path(meta["dir"], "meta.json").exists():
            save_meta(Path(meta["dir"]), meta)


def _exec_done(init: int, nspawn: int, kind: str) -> bool:
    if kind != "systemd":
        return payload_started(init)
    try:
        return os.readlink(f"/proc/{init}/exe") != os.readlink(f"/proc/{nspawn}/exe")
    except OSError:
        return False


def write_inside(root: Path, rel: str, data: bytes) -> None:
    """Write root/rel without following any symlink on the way (the tree may come from a
    student's machine, where /etc could point anywhere on the host), owned by the tree's
    root (the machine's root user once private users shifted the tree)."""
    *dirs, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        owner = os.fstat(fd)
        for part in dirs:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)  # a symlink or hard link is replaced, not written through
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            os.fchown(out, owner.st_uid, owner.st_gid)
            os.write(out, data)
        finally:
            os.close(out)
    except OSError as exc:
        raise ProvisioningError(
            _("cannot write /{rel} in {root}: {error}").format(rel=rel, root=root, error=exc)
        ) from exc
    finally:
        os.close(fd)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # console colours
    return "\n".join(text.splitlines()[-lines:])
