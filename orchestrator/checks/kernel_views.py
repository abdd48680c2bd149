"""Whether a machine's kernel views (/sys, /proc) are the kernel's own when a check reads them.

Root in a machine can mount over what the kernel shows: bind a file of its own over
/proc/cpuinfo or /sys/class/dmi/id/sys_vendor, or a tmpfs over /sys/bus/virtio/devices,
and write an answer that matches the fake. A reboot would undo it, but checks do not reboot
for every task. So the trusted shell lists the mounts at or under /sys and /proc, and a
check on a machine where one of them is not the kernel's own view fails as tampered.

The kernel's own views are its file systems mounted whole, or a part of one at its own
place (proc's `/sys` at /proc/sys: read-only binds that Docker and nspawn make). A
container's engine also mounts things of its own there (Docker's masks, LXD's boot ID and
lxcfs, nspawn's /sys), listed per engine in engine_mounts.py.
Each may appear as often as its engine makes it, and a mask must still hide (an empty
folder, a character device): a second mount at one of those places, or a mask with
content, is the student's. A VM's engine mounts nothing there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from orchestrator.checks.engine_mounts import ENGINES, EngineMount
from orchestrator.messages import _

#: what systemd and the kernel mount under /sys and /proc in a VM
KERNEL_FS = frozenset(
    {
        *("sysfs", "proc", "securityfs", "cgroup", "cgroup2", "pstore", "bpf", "efivarfs"),
        *("debugfs", "tracefs", "configfs", "fusectl", "autofs", "binfmt_misc"),
    }
)
#: a kernel's own tmpfs under them: the cgroup v1 hierarchy's folder
KERNEL_TMPFS = frozenset({"/sys/fs/cgroup"})
#: where a part of a kernel file system is its own view: its usual mount point + its root
HOME = {"proc": "/proc", "sysfs": "/sys"}
MARK = "mount"
#: one line per mount under the kernel's views: `mount ROOT MOUNTPOINT FSTYPE STATE` (the
#: fields of /proc/self/mountinfo; the file system type is the third field from the end);
#: STATE says whether a tmpfs shows an empty folder or a character device, as masks do
SCRIPT = (
    "awk '$5 ~ /^\\/(sys|proc)(\\/|$)/ {print $4, $5, $(NF-2)}' /proc/self/mountinfo"
    " | while read -r r p f; do s=-; case $f in *tmpfs)"
    ' if [ -c "$p" ]; then s=chr; elif [ -d "$p" ] && [ -z "$(ls -A "$p" 2>/dev/null)" ];'
    f' then s=empty; fi;; esac; echo "{MARK} $r $p $f $s"; done'
)


@dataclass(frozen=True)
class Mount:
    root: str  # the part of its file system it shows (`/` when whole)
    point: str
    fstype: str
    state: str = "-"  # `empty` (a folder with nothing in it), `chr` (a device), or `-`

    @property
    def foreign(self) -> bool:
        """Not the kernel's own view: another file system, or a part of one bound elsewhere."""
        if self.fstype == "tmpfs" and self.point in KERNEL_TMPFS:
            return self.root != "/"
        if self.fstype in ("cgroup", "cgroup2") and self.point.startswith("/sys/fs/cgroup/"):
            return False  # a cgroup namespace's root: the kernel's, whatever the root
        if self.fstype in HOME and self.root != "/":
            return self.point != HOME[self.fstype] + self.root
        return self.fstype not in KERNEL_FS or self.root != "/"


def views_of(backend: Any) -> tuple[EngineMount, ...] | None:
    """The engine's own mounts on `backend`'s machines: none on a VM; None (not judged)
    on an engine whose mounts are not known (engine_mounts.py)."""
    if "vm" in getattr(backend, "capabilities", ()):
        return ()
    return ENGINES.get(getattr(backend, "virtualization", ""))


def parse(text: str) -> list[Mount]:
    """The mount lines of the trusted shell's output; other lines are ignored."""
    found = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) in (4, 5) and parts[0] == MARK:
            state = parts[4] if len(parts) == 5 else "-"
            found.append(Mount(_unescape(parts[1]), _unescape(parts[2]), parts[3], state))
    return found


def covered(mounts: list[Mount], engine: tuple[EngineMount, ...] = ()) -> str | None:
    """Why checks on this machine cannot trust what its kernel shows, or None."""
    stacked: Counter[str] = Counter()
    for m in mounts:
        if not m.foreign:
            continue
        own = next((e for e in engine if e.matches(m.point, m.fstype, m.root)), None)
        if own is not None and (not own.hides or m.state in ("empty", "chr")):
            stacked[m.point] += 1
            if stacked[m.point] <= own.times:
                continue
        # the part of a kernel file system says what was moved; another file system's
        # root would be a path of the host's in a container, which the student need not see
        what = f"{m.fstype} ({m.root})" if m.fstype in KERNEL_FS and m.root != "/" else m.fstype
        return _(
            "tampered: {what} is mounted over {point}, so the kernel's own view is hidden"
        ).format(what=what, point=m.point)
    return None


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
