"""The derived seccomp profile: every ioctl but btrfs's volume ones, the rest untouched."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.backends.docker.seccomp import BTRFS_VOL_IOCTLS, derive, main

DEFAULT = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [
        {"names": ["read", "ioctl", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
    ],
}  # fmt: skip

SUBVOL_CREATE, SNAP_CREATE_V2, TIOCGWINSZ = 0x5000940E, 0x50009417, 0x5413


def allowed(profile: dict, request: int) -> bool:  # type: ignore[type-arg]
    """Whether ioctl(fd, request) passes the profile's rules, as libseccomp builds them: a
    matching refusal wins over a matching allow (seen on this engine)."""
    ops = {
        "SCMP_CMP_LT": lambda v, a: v < a["value"],
        "SCMP_CMP_GT": lambda v, a: v > a["value"],
        "SCMP_CMP_EQ": lambda v, a: v == a["value"],
        "SCMP_CMP_MASKED_EQ": lambda v, a: v & a["value"] == a["valueTwo"],
    }
    matching = [
        rule["action"]
        for rule in profile["syscalls"]
        if "ioctl" in rule["names"] and all(ops[a["op"]](request, a) for a in rule.get("args", []))
    ]
    return "SCMP_ACT_ALLOW" in matching and "SCMP_ACT_ERRNO" not in matching


def test_btrfs_volume_ioctls_are_refused_and_others_allowed() -> None:
    profile = derive(DEFAULT)
    assert not allowed(profile, SUBVOL_CREATE) and not allowed(profile, SNAP_CREATE_V2)
    # the kernel drops the upper half of the request: no way around through it
    assert not allowed(profile, (1 << 32) | SUBVOL_CREATE)
    assert not allowed(profile, (0xFFFF << 48) | SNAP_CREATE_V2)
    assert allowed(profile, TIOCGWINSZ) and allowed(profile, 0xC0045877)
    assert all(not allowed(profile, r) for r in range(*BTRFS_VOL_IOCTLS))
    assert allowed(DEFAULT, SUBVOL_CREATE)  # what the engine allows by default


def test_everything_else_is_the_engines_default() -> None:
    profile = derive(DEFAULT)
    assert profile["syscalls"][0]["names"] == ["read", "write"]
    assert profile["syscalls"][1:3] == DEFAULT["syscalls"][1:3]
    assert DEFAULT["syscalls"][0]["names"] == ["read", "ioctl", "write"]  # not changed


def test_main_writes_the_profile(tmp_path: Path) -> None:
    src, dest = tmp_path / "default.json", tmp_path / "etc" / "profile.json"
    src.write_text(json.dumps(DEFAULT))
    main([str(src), str(dest)])
    assert json.loads(dest.read_text()) == derive(DEFAULT)
