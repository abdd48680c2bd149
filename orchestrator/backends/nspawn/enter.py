"""Enter an nspawn machine with no more power than its init: run as a program, not imported.

    python -I -S enter.py --pid INIT --bounding HEX [--seccomp FILE] [--cgroup DIR]...
        [--env K=V]... -- ARGV...
    python -I -S enter.py --dump-seccomp INIT FILE

Every step that needs power happens here, in a fresh single-threaded process whose code and
libraries all come from the host, before anything of the machine is executed:

1. join the exec's cgroups (limits, and the host can find and kill all it starts);
2. enter every namespace of the machine's init, its user namespace first, and become uid 0
   of that namespace (a high, unprivileged uid on the host);
3. fork into its PID namespace; the child drops every capability outside the init's
   bounding set and installs the seccomp filters the init has (dumped once per boot with
   ptrace): systemd-nspawn's, and guestlab's filter of btrfs volume ioctls, which the init
   has from its launcher (seccomp.py); without a dump, that filter alone. Then it
   executes ARGV in the machine.

The parent stays outside the machine's PID namespace, waits, and exits with the child's
status (128+N for signal N). `--dump-seccomp` writes the filters of INIT that this process
does not have itself (those systemd-nspawn installed), oldest first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import sys

if __package__:
    from orchestrator.backends.nspawn.seccomp import UnsupportedMachine, install, volume_filter
else:  # run as a program (python -I -S): its sibling, from the same host directory
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from seccomp import UnsupportedMachine, install, volume_filter

NAMESPACES = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
PR_CAPBSET_DROP = 24
PR_SET_PDEATHSIG = 1
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_DETACH = 17
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def fail(what: str, code: int = 125) -> None:
    err = ctypes.get_errno()
    sys.stderr.write(f"guestlab-enter: {what}: {os.strerror(err) if err else 'failed'}\n")
    sys.stderr.flush()
    os._exit(code)


def own_filter_count() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp_filters:"):
                return int(line.split()[1])
    return 0


def dump_seccomp(pid: int, out: str) -> int:
    """Write the filters of `pid` beyond our own as (u32 count, count*8 bytes) records."""
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        fail(f"ptrace seize {pid}")
    filters: list[bytes] = []
    try:
        libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
        os.waitpid(pid, WALL)
        for index in range(256):
            n = libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), None)
            if n < 0:
                break
            buf = ctypes.create_string_buffer(n * 8)
            if libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), buf) != n:
                fail("reading a seccomp filter")
            filters.append(buf.raw)
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, 0)
    # index 0 is the newest; the oldest ones are inherited from us (the host side)
    ours = own_filter_count()
    theirs = filters[: len(filters) - ours] if ours else filters
    with open(out + ".tmp", "wb") as f:
        for prog in reversed(theirs):
            f.write(struct.pack("<I", len(prog) // 8) + prog)
    os.replace(out + ".tmp", out)
    return len(theirs)


def load_filters(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        raw = f.read()
    progs, pos = [], 0
    while pos < len(raw):
        (count,) = struct.unpack_from("<I", raw, pos)
        progs.append(raw[pos + 4 : pos + 4 + count * 8])
        pos += 4 + count * 8
    return progs


def execute(argv: list[str], env: dict[str, str]) -> None:
    """execvpe without its lazy imports (nothing of the machine may be imported)."""
    dirs = [""] if "/" in argv[0] else env.get("PATH", "/usr/bin:/bin").split(":")
    first: OSError | None = None
    for d in dirs:
        try:
            os.execve(os.path.join(d, argv[0]) if d else argv[0], argv, env)
        except OSError as exc:
            if first is None or isinstance(first, FileNotFoundError):
                first = exc
    assert first is not None
    sys.stderr.write(f"{argv[0]}: {first.strerror}\n")
    sys.stderr.flush()
    os._exit(127 if isinstance(first, FileNotFoundError) else 126)


def outside(bounding: int, last_cap: int) -> list[int]:
    """The capabilities (numbers up to last_cap) not in a bounding set."""
    return [cap for cap in range(last_cap + 1) if not bounding >> cap & 1]


def parse(args: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    opts: dict[str, list[str]] = {}
    while args and args[0] != "--":
        key, value, args = args[0], args[1], args[2:]
        opts.setdefault(key, []).append(value)
    if not args:
        raise SystemExit("guestlab-enter: no command after --")
    return opts, args[1:]


def enter_namespaces(pid: int) -> None:
    """Enter every namespace of `pid` and its root directory, and become uid 0 there."""
    # a namespace the machine shares with the host (no private users, say) is not entered
    todo = [
        ns
        for ns in NAMESPACES
        if os.stat(f"/proc/{pid}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino
    ]
    fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in todo]
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    for ns, fd in zip(todo, fds, strict=True):
        if libc.setns(fd, 0) != 0:
            fail(f"entering the {ns} namespace of {pid}")
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    os.chdir("/")
    os.close(root)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)  # root of the machine's user namespace, not of the host


def main(args: list[str]) -> None:
    if args[:1] == ["--dump-seccomp"]:
        print(dump_seccomp(int(args[1]), args[2]))
        return
    opts, argv = parse(args)
    pid = int(opts["--pid"][0])
    keep = int(opts["--bounding"][0], 16)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    if "--seccomp" in opts:  # the init's filters: its launcher's included
        filters = load_filters(opts["--seccomp"][0])
    else:
        try:
            filters = [volume_filter(os.uname().machine)]
        except UnsupportedMachine as exc:
            sys.stderr.write(f"guestlab-enter: {exc}\n")
            os._exit(125)
    env = dict(kv.split("=", 1) for kv in opts.get("--env", []))
    for d in opts.get("--cgroup", []):
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    enter_namespaces(pid)
    child = os.fork()
    if child == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for cap in outside(keep, last_cap):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                fail(f"dropping capability {cap}")
        for prog in filters:
            try:
                install(prog)
            except OSError:
                fail("installing the machine's seccomp filter")
        execute(argv, env)
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # the child decides; we follow it
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main(sys.argv[1:])
