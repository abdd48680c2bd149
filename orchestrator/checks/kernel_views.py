"""Whether a VM's kernel views (/sys, /proc) are the kernel's own when a check reads them.

Root in a VM can mount over what the kernel shows: bind a file of its own over
/sys/class/dmi/id/sys_vendor, or a tmpfs over /sys/bus/virtio/devices, and write an
answer that matches the fake. A reboot would undo it, but checks do not reboot for every
task. So the trusted shell lists the mounts at or under /sys and /proc, and a check on a
machine where one of them is not the kernel's own fails as tampered.

A VM's own mounts there are kernel file systems mounted whole (root `/`). A container's
engine covers parts of them itself (Docker's masks, LXD's lxcfs, nspawn's read-only
binds), so this applies to virtual machines only.
"""

from __future__ import annotations

from dataclasses import dataclass

#: what systemd and the kernel mount under /sys and /proc in a VM
KERNEL_FS = frozenset(
    {
        *("sysfs", "proc", "securityfs", "cgroup", "cgroup2", "pstore", "bpf", "efivarfs"),
        *("debugfs", "tracefs", "configfs", "fusectl", "autofs", "binfmt_misc"),
    }
)
#: a kernel's own tmpfs under them: the cgroup v1 hierarchy's folder
KERNEL_TMPFS = frozenset({"/sys/fs/cgroup"})
MARK = "mount"
#: one line per mount under the kernel's views: `mount ROOT MOUNTPOINT FSTYPE` (the
#: fields of /proc/self/mountinfo; the file system type is the third field from the end)
SCRIPT = (
    f"awk '$5 ~ /^\\/(sys|proc)(\\/|$)/ {{print \"{MARK}\", $4, $5, $(NF-2)}}' /proc/self/mountinfo"
)


@dataclass(frozen=True)
class Mount:
    root: str  # the part of its file system it shows (`/` when whole)
    point: str
    fstype: str

    @property
    def foreign(self) -> bool:
        """Not the kernel's own view: another file system, or a part of one bound here."""
        if self.fstype == "tmpfs" and self.point in KERNEL_TMPFS:
            return self.root != "/"
        return self.fstype not in KERNEL_FS or self.root != "/"


def parse(text: str) -> list[Mount]:
    """The mount lines of the trusted shell's output; other lines are ignored."""
    found = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 4 and parts[0] == MARK:
            found.append(Mount(_unescape(parts[1]), _unescape(parts[2]), parts[3]))
    return found


def covered(mounts: list[Mount]) -> str | None:
    """Why checks on this VM cannot trust what its kernel shows, or None."""
    foreign = [m for m in mounts if m.foreign]
    if not foreign:
        return None
    m = foreign[0]
    what = m.fstype if m.root == "/" else f"{m.fstype} ({m.root})"
    return f"tampered: {what} is mounted over {m.point}, so the kernel's own view is hidden"


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
