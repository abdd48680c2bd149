"""The seccomp filter that keeps btrfs volume ioctls out of nspawn machines; also a program.

    python -I -S seccomp.py -- /usr/bin/systemd-nspawn ARGS...

installs the filter in a fresh process and then becomes systemd-nspawn (same PID): every
process of the machine descends from it and inherits the filter, its init and all that its
systemd starts included. systemd-nspawn, as guestlab runs it (a plain --directory, no
--template, --ephemeral or --volatile), needs none of these ioctls; guestlab makes its
snapshots from the host, outside the filter.

Why: btrfs lets anyone who can write a directory create a subvolume there
(BTRFS_IOC_SUBVOL_CREATE and the snapshot ioctls), and a new subvolume is outside the quota
group that bounds the machine's disk. Every btrfs ioctl that takes `struct
btrfs_ioctl_vol_args` is _IOW(0x94, nr, 4096): the requests 0x50009400..0x500094ff. They
fail with EPERM, as in guestlab's Docker profile; every other ioctl passes (terminals need
TIOCGWINSZ and friends).

The kernel reads an ioctl request as a 32-bit `unsigned int`, dropping the upper half of
the 64-bit register (0x1_5000940e creates a subvolume like 0x5000940e). So the filter
judges the low half alone: a filter that let any request with a non-zero upper half pass
would be bypassed (as Flatpak's TIOCSTI filter was, CVE-2019-10063).

This module needs only the standard library: enter.py loads it as a sibling when
run as a program, and installs the same filter before entering a machine.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

# classic BPF opcodes (linux/bpf_common.h) used here
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at offset k of seccomp_data
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K (unsigned)
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K (unsigned)
BPF_RET_K = 0x06  # BPF_RET | BPF_K
BPF_MAXINSNS = 4096

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1
DENY = SECCOMP_RET_ERRNO | EPERM

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
OFFSET_NR = 0
OFFSET_ARCH = 4
#: the low 32 bits of args[1] (the ioctl request)
OFFSET_REQUEST = 16 + 8 + (4 if sys.byteorder == "big" else 0)

#: _IOW(0x94, nr, 4096) for every nr: btrfs's volume ioctls (subvolumes, snapshots, devices)
VOLUME_IOCTLS = range(0x50009400, 0x50009500)

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_ARM = 0x40000028
X32_SYSCALL_BIT = 0x40000000

#: per machine (uname -m): every ABI its processes can call the kernel with, and the
#: number of ioctl in each (x32 calls arrive with the x86_64 arch and bit 30 set)
ABIS: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
    "x86_64": (
        (AUDIT_ARCH_X86_64, (16, X32_SYSCALL_BIT | 16, X32_SYSCALL_BIT | 514)),
        (AUDIT_ARCH_I386, (54,)),
    ),
    "aarch64": (
        (AUDIT_ARCH_AARCH64, (29,)),
        (AUDIT_ARCH_ARM, (54,)),
    ),
}

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

Insn = tuple[int, int, int, int]  # (code, jt, jf, k), as in struct sock_filter
Step = str | tuple[int, int | str, int | str, int]  # a label, or an insn jumping to labels


class UnsupportedMachine(Exception):
    """No filter is known for this processor architecture."""


def volume_ioctl_filter(machine: str) -> list[Insn]:
    """The filter program for `machine`: EPERM for ioctls in VOLUME_IOCTLS, whatever the
    upper half of the request; every other call allowed; an unknown ABI kills."""
    if machine not in ABIS:
        known = ", ".join(sorted(ABIS))
        raise UnsupportedMachine(
            f"guestlab keeps btrfs volume ioctls out of nspawn machines with a seccomp "
            f"filter written for {known} only, and this host is {machine}: it will not "
            "start machines unfiltered"
        )
    # a label is a str marking a position; jt/jf may name one (forward jumps only)
    code: list[Step] = [(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH)]
    for arch, _numbers in ABIS[machine]:
        code.append((BPF_JEQ_K, f"abi-{arch:x}", 0, arch))
    code.append((BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS))
    for arch, numbers in ABIS[machine]:
        code += [f"abi-{arch:x}", (BPF_LD_W_ABS, 0, 0, OFFSET_NR)]
        code += [(BPF_JEQ_K, "ioctl", 0, nr) for nr in numbers]
        code.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    code += [
        "ioctl",
        (BPF_LD_W_ABS, 0, 0, OFFSET_REQUEST),  # the low half only: the kernel drops the rest
        (BPF_JGE_K, 0, "allow", VOLUME_IOCTLS.start),
        (BPF_JGT_K, "allow", 0, VOLUME_IOCTLS.stop - 1),
        (BPF_RET_K, 0, 0, DENY),
        "allow",
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return resolve(code)


def resolve(code: list[Step]) -> list[Insn]:
    """Turn label names in jump fields into relative offsets (forward jumps only)."""
    labels: dict[str, int] = {}
    steps: list[tuple[int, int | str, int | str, int]] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(steps)
        else:
            steps.append(item)
    out: list[Insn] = []
    for i, (op, jt, jf, k) in enumerate(steps):
        t, f = (labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf))
        if not (0 <= t <= 255 and 0 <= f <= 255):
            raise ValueError(f"jump out of range at instruction {i}")
        out.append((op, t, f, k))
    if len(out) > BPF_MAXINSNS:
        raise ValueError("filter too long")
    return out


def pack(insns: list[Insn]) -> bytes:
    """The bytes of a struct sock_filter array."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def install(prog: bytes, *, no_new_privs: bool = False) -> None:
    """Attach a filter program (packed sock_filter array) to this thread, for good.

    Without no_new_privs this needs CAP_SYS_ADMIN (root on the host, or in the user
    namespace); no_new_privs would also disarm every setuid program (sudo, su, passwd)
    of a machine, so the launcher never sets it.
    """
    if no_new_privs and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def volume_filter(machine: str) -> bytes:
    """The packed filter program for `machine` (UnsupportedMachine when there is none)."""
    return pack(volume_ioctl_filter(machine))


def main(args: list[str]) -> None:
    if len(args) < 2 or args[0] != "--" or not os.path.isabs(args[1]):
        sys.stderr.write("usage: seccomp.py -- /ABSOLUTE/PATH/OF/PROGRAM [ARGS...]\n")
        os._exit(2)
    try:
        install(volume_filter(os.uname().machine))
    except UnsupportedMachine as exc:
        sys.stderr.write(f"guestlab: {exc}\n")
        os._exit(125)
    except OSError as exc:
        sys.stderr.write(f"guestlab: cannot install the seccomp filter: {exc.strerror}\n")
        os._exit(125)
    try:
        os.execv(args[1], args[1:])
    except OSError as exc:
        sys.stderr.write(f"guestlab: cannot run {args[1]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
