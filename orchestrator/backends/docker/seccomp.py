"""The engine's own seccomp profile, less the btrfs ioctls that make subvolumes.

On btrfs storage a machine's disk bound is a quota group on its subvolume, and btrfs lets
anyone who may write a folder make a new subvolume there, outside that group: a student
could write past the bound. The profile the engine applies by default allows every
`ioctl`; this one allows every ioctl but btrfs's own (type 0x94 with a 4096-byte
argument: subvolume and snapshot creation among them), which no lab needs. The set-up
script derives it, with `main`, from the default profile Debian ships for the installed
engine (scripts/setup/docker.sh).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROFILE = Path(os.environ.get("GUESTLAB_DOCKER_SECCOMP", "/etc/guestlab/docker-seccomp.json"))
#: btrfs's ioctls with a struct btrfs_ioctl_vol_args argument (_IOW(0x94, nr, 4096)):
#: SNAP_CREATE 0x50009401, SUBVOL_CREATE 0x5000940e, SNAP_CREATE_V2 0x50009417, ...
BTRFS_VOL_IOCTLS = (0x50009400, 0x500094FF)


def derive(default: dict[str, Any]) -> dict[str, Any]:
    """The default profile with ioctl allowed outside BTRFS_VOL_IOCTLS only."""
    profile = json.loads(json.dumps(default))
    for entry in profile["syscalls"]:
        if entry.get("action") == "SCMP_ACT_ALLOW" and not entry.get("args"):
            entry["names"] = [n for n in entry.get("names", []) if n != "ioctl"]
    low, high = BTRFS_VOL_IOCTLS
    for op, value in (("SCMP_CMP_LT", low), ("SCMP_CMP_GT", high)):
        # two rules, either allows: libseccomp takes one comparison per argument and rule
        profile["syscalls"].append(
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": value, "valueTwo": 0, "op": op}],
            }
        )
    # the kernel reads the request as 32 bits: 0x1_5000940e is 0x5000940e to it, and the
    # rule above allows it; this one refuses the range whatever the upper half holds, and
    # a refusal wins where rules of one call disagree
    profile["syscalls"].append(
        {
            "names": ["ioctl"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [
                {"index": 1, "value": 0xFFFFFF00, "valueTwo": low, "op": "SCMP_CMP_MASKED_EQ"}
            ],
        }
    )
    return profile


def installed() -> Path | None:
    """The derived profile, when the set-up made one."""
    return PROFILE if PROFILE.is_file() else None


def main(argv: list[str]) -> None:
    """Write the derived profile of the default one: main([DEFAULT.json, OUT.json])."""
    src, dest = Path(argv[0]), Path(argv[1])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(derive(json.loads(src.read_text())), indent=1))
    tmp.replace(dest)
