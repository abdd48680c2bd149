"""The seccomp filter that keeps btrfs volume ioctls out of nspawn machines.

Its program is run here by a small classic-BPF interpreter on sample system calls, and
installed for real in child processes, whose ioctls the kernel then judges.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.backends.nspawn import seccomp as sc

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "orchestrator" / "backends" / "nspawn" / "seccomp.py"
ALLOW, DENY, KILL = sc.SECCOMP_RET_ALLOW, sc.SECCOMP_RET_ERRNO | 1, sc.SECCOMP_RET_KILL_PROCESS
X86_64, I386 = sc.AUDIT_ARCH_X86_64, sc.AUDIT_ARCH_I386
AARCH64, ARM = sc.AUDIT_ARCH_AARCH64, sc.AUDIT_ARCH_ARM
X32 = sc.X32_SYSCALL_BIT


def run(prog: list[sc.Insn], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the kernel would return for one system call (the opcodes the filter uses)."""
    full = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("=iIQ6Q", nr, arch, 0x401000, *full)
    pc = acc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == sc.BPF_LD_W_ABS:
            assert k % 4 == 0 and k + 4 <= len(data)
            (acc,) = struct.unpack_from("=I", data, k)
        elif code in (sc.BPF_JEQ_K, sc.BPF_JGT_K, sc.BPF_JGE_K):
            taken = {
                sc.BPF_JEQ_K: acc == k,
                sc.BPF_JGT_K: acc > k,
                sc.BPF_JGE_K: acc >= k,
            }[code]
            pc += jt if taken else jf
        elif code == sc.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"opcode {code:#x} not expected")


X86 = sc.volume_ioctl_filter("x86_64")
ARM64 = sc.volume_ioctl_filter("aarch64")

BLOCKED = [
    0x5000940E,  # SUBVOL_CREATE
    0x50009401,  # SNAP_CREATE
    0x50009417,  # SNAP_CREATE_V2
    0x50009418,  # SUBVOL_CREATE_V2
    0x5000940F,  # SNAP_DESTROY
    0x50009400,
    0x500094FF,
    0x1_5000940E,  # the kernel drops the upper half: still SUBVOL_CREATE
    0xFFFFFFFF_5000940E,
    0x80000000_50009417,
]
PASSED = [
    0x5413,  # TIOCGWINSZ
    0x5414,  # TIOCSWINSZ
    0x5401,  # TCGETS
    0x541B,  # FIONREAD
    0x80089419,  # BTRFS_IOC_SUBVOL_GETFLAGS (_IOR, size 8)
    0xD0009412,  # BTRFS_IOC_INO_LOOKUP (_IOWR, size 4096)
    0x500093FF,
    0x50009500,
    0x40009400,
    0x5000940E_00000000,  # the request in the upper half is not the request
    0,
]


@pytest.mark.parametrize("request_", BLOCKED, ids=hex)
def test_volume_ioctls_fail_with_eperm_on_every_abi(request_: int) -> None:
    for nr in (16, X32 | 514, X32 | 16):
        assert run(X86, nr, X86_64, (3, request_, 0x7FFD0000)) == DENY
    assert run(X86, 54, I386, (3, request_ & 0xFFFFFFFF)) == DENY
    assert run(ARM64, 29, AARCH64, (3, request_)) == DENY
    assert run(ARM64, 54, ARM, (3, request_ & 0xFFFFFFFF)) == DENY


@pytest.mark.parametrize("request_", PASSED, ids=hex)
def test_other_ioctls_pass(request_: int) -> None:
    assert run(X86, 16, X86_64, (1, request_, 0)) == ALLOW
    assert run(X86, 54, I386, (1, request_ & 0xFFFFFFFF)) == ALLOW
    assert run(ARM64, 29, AARCH64, (1, request_)) == ALLOW


def test_other_system_calls_pass_whatever_their_arguments() -> None:
    # read, write, and i386's read (3): the range is only judged for ioctl
    for nr in (0, 1, 3, 54, 59, 435):
        assert run(X86, nr, X86_64, (3, 0x5000940E)) == ALLOW
    for nr in (3, 16, 29):  # i386's read, lchown and pause (16 is x86_64's ioctl)
        assert run(X86, nr, I386, (3, 0x5000940E)) == ALLOW
    assert run(ARM64, 16, AARCH64, (3, 0x5000940E)) == ALLOW  # arm64 16 is not ioctl


def test_an_abi_the_filter_does_not_know_is_killed() -> None:
    assert run(X86, 29, AARCH64, (3, 0x5000940E)) == KILL
    assert run(ARM64, 16, X86_64, (3, 0x5000940E)) == KILL
    assert run(X86, 16, 0, (3, 0x5413)) == KILL


@given(st.integers(0, 2**64 - 1))
def test_the_decision_depends_on_the_low_half_of_the_request_only(request_: int) -> None:
    blocked = request_ & 0xFFFFFFFF in sc.VOLUME_IOCTLS
    assert run(X86, 16, X86_64, (0, request_)) == (DENY if blocked else ALLOW)
    assert run(ARM64, 29, AARCH64, (0, request_)) == (DENY if blocked else ALLOW)


def test_the_program_is_well_formed() -> None:
    for prog in (X86, ARM64):
        assert prog[-1][0] == sc.BPF_RET_K and len(prog) < 64
        for i, (code, jt, jf, _k) in enumerate(prog):
            if code != sc.BPF_RET_K:
                assert i + 1 + max(jt, jf) < len(prog)
        packed = sc.pack(prog)
        assert len(packed) == 8 * len(prog)
        assert struct.unpack_from("=HBBI", packed, 0) == prog[0]
    low_half_of_args1 = 24 if sys.byteorder == "little" else 28
    assert low_half_of_args1 == sc.OFFSET_REQUEST


def test_other_architectures_are_refused_in_a_sentence() -> None:
    with pytest.raises(sc.UnsupportedMachine, match="ppc64le: it will not start machines"):
        sc.volume_ioctl_filter("ppc64le")


# ------------------------------------------------------------ in the kernel

# Ioctls on a pipe and a terminal: the btrfs requests fail with ENOTTY on them without the
# filter (no side effect), with EPERM under it. Prints {request: errno or 0}.
PROBE = r"""
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "filter":
    from orchestrator.backends.nspawn import seccomp as sc
    sc.install(sc.volume_filter(os.uname().machine), no_new_privs=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
r, w = os.pipe()
os.write(w, b"abc")
_master, tty = os.openpty()
buf = ctypes.create_string_buffer(4096)
out = {}
for fd, req in json.loads(sys.argv[3]):
    fd = {"pipe": r, "tty": tty}[fd]
    out[hex(req)] = 0 if libc.ioctl(fd, req, buf) == 0 else ctypes.get_errno()
print(json.dumps(out))
"""
CASES = [
    ("pipe", 0x5000940E),
    ("pipe", 0x1_5000940E),
    ("pipe", 0xFFFFFFFF_50009417),
    ("pipe", 0x500094FF),
    ("pipe", 0x50009500),
    ("pipe", 0x541B),  # FIONREAD
    ("tty", 0x5413),  # TIOCGWINSZ
    ("tty", 0x1_00005413),
]
EXPECTED = {
    "0x5000940e": 1,
    "0x15000940e": 1,
    "0xffffffff50009417": 1,
    "0x500094ff": 1,
    "0x50009500": 25,
    "0x541b": 0,
    "0x5413": 0,
    "0x100005413": 0,
}


def probe(*prefix: str, mode: str) -> dict[str, int]:
    out = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE, str(ROOT), mode, json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_kernel_refuses_volume_ioctls_under_the_filter_and_only_them() -> None:
    unfiltered = probe(mode="none")
    assert unfiltered == {**EXPECTED, **{k: 25 for k, v in EXPECTED.items() if v == 1}}
    assert probe(mode="filter") == EXPECTED  # 1 is EPERM, 25 ENOTTY


def test_the_launcher_installs_the_filter_then_becomes_the_program() -> None:
    launch = [sys.executable, "-I", "-S", str(LAUNCHER), "--"]
    if os.geteuid() != 0:  # it never sets no_new_privs: that would disarm sudo in a machine
        done = subprocess.run([*launch, "/bin/true"], capture_output=True, text=True)
        assert done.returncode == 125
        assert "cannot install the seccomp filter" in done.stderr
        return
    assert probe(*launch, mode="none") == EXPECTED
    status = subprocess.run(
        [*launch, "/bin/grep", "^NoNewPrivs", "/proc/self/status"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout.split() == ["NoNewPrivs:", "0"]


def test_the_launcher_wants_an_absolute_program() -> None:
    for args in ([], ["--"], ["--", "true"], ["true"]):
        done = subprocess.run(
            [sys.executable, "-I", "-S", str(LAUNCHER), *args], capture_output=True, text=True
        )
        assert done.returncode == 2 and "usage:" in done.stderr
