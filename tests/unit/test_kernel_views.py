"""A VM's kernel views: the mounts a student makes over /sys or /proc fail its checks as
tampered; the kernel's own mounts do not (a container's: test_engine_mounts.py)."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.backends.contract import ExecResult
from orchestrator.checks import kernel_views, trusted

#: a Debian 12 VM's own mounts there, as the trusted shell prints them
VM_MOUNTS = """\
mount / /sys sysfs
mount / /proc proc
mount / /sys/kernel/security securityfs
mount / /sys/fs/cgroup cgroup2
mount / /sys/fs/pstore pstore
mount / /sys/fs/bpf bpf
mount / /proc/sys/fs/binfmt_misc autofs
mount / /sys/kernel/debug debugfs
mount / /sys/kernel/tracing tracefs
mount / /sys/fs/fuse/connections fusectl
mount / /sys/kernel/config configfs
"""


def test_a_vm_s_own_mounts_hide_nothing() -> None:
    mounts = kernel_views.parse(VM_MOUNTS + "a line that is no mount\n")
    assert len(mounts) == 11 and kernel_views.covered(mounts) is None


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # a file of the student's own bound over what the firmware reports
        ("mount /root/vendor /sys/devices/virtual/dmi/id/sys_vendor ext4", "ext4 is mounted"),
        # an empty tmpfs over the virtio bus: "no paravirtual device"
        ("mount / /sys/bus/virtio/devices tmpfs", "tmpfs is mounted over /sys/bus/virtio"),
        # one sysfs file bound over another: the kernel's, but not its view of that path
        (
            "mount /devices/virtual/dmi/id/product_name /sys/class/dmi/id/sys_vendor sysfs",
            "sysfs (/devices/virtual/dmi/id/product_name) is mounted over /sys/class/dmi",
        ),
        # a name with a space, as mountinfo escapes it
        ("mount / /sys/my\\040dir tmpfs -", "tmpfs is mounted over /sys/my dir,"),
    ],
)
def test_a_mount_over_the_kernel_s_views_is_tampering(line: str, said: str) -> None:
    why = kernel_views.covered(kernel_views.parse(VM_MOUNTS + line))
    assert why and why.startswith("tampered: ") and said in why


def outcome(stdout: str) -> ExecResult:
    return ExecResult(0, stdout=stdout)


def test_a_vm_s_probes_all_fail_when_its_kernel_view_is_covered() -> None:
    guard = trusted.Guard((("systemd-detect-virt",), ()), None, views=())
    probe = guard.probe("guest")
    assert probe is not None and kernel_views.SCRIPT in probe.argv[2]
    assert guard.verdicts(outcome(VM_MOUNTS)) == [None, None]
    covered = guard.verdicts(outcome(VM_MOUNTS + "mount / /sys/bus/virtio/devices tmpfs"))
    assert all(v and "tmpfs is mounted over /sys/bus/virtio/devices" in v for v in covered)
    # a machine whose engine's own mounts are not known is not judged by it
    container = trusted.Guard((("cat",),), None)
    assert container.probe("web") is None and container.verdicts(None) == [None]


def test_the_script_lists_this_host_s_mounts_under_sys_and_proc() -> None:
    out = subprocess.run(
        [str(trusted.BUSYBOX), "sh", "-c", kernel_views.SCRIPT],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    points = {m.point: m for m in kernel_views.parse(out)}
    assert points["/proc"].fstype == "proc" and points["/sys"].fstype == "sysfs"
    assert all(p.startswith(("/sys", "/proc")) for p in points)
