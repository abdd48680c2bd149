"""The data-disk lab on one real VM (one boot; each reboot costs about a minute under
emulation): wrong answers, runtime-only answers and hand-made imitations fail, and `gc`
removes the extra disk of a lab whose store record and directory are gone.

`guestlab prove`'s steps (every solution passes, the last one through a real reboot;
reset fails them again) run first, on this module's VM (test_scenarios.py leaves this
lab to here: one boot for both); the fixture's end checks that down and gc leave
nothing. Then each case changes one thing in a solved lab; the cases that only a reboot
can tell apart are graded through one, the others (fstab-made states that a reboot
mounts again as they are) through the checks' own verdicts without it, beside the
solved state's passing verdicts.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.host import domain_prefix, lab_dir
from orchestrator.lab.prove import prove_up_lab
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id

pytestmark = pytest.mark.vagrant

#: the data disk as the solution finds it: the 1G disk, whatever its name
DATA = '$(lsblk -dpno NAME,SIZE,TYPE | awk \'$2 == "1G" && $3 == "disk" {print $1}\')'
FIND, FS, MOUNT = "find-disk", "filesystem", "mount-by-uuid"


class Lab:
    """The module's one lab: commands in its VM, its checks, reset."""

    def __init__(self, lab: Any, store: Store) -> None:
        self.lab, self.store = lab, store
        self.volume = lab.params["volume"]
        self.mnt = f"/srv/{self.volume}"

    @property
    def record(self) -> Any:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        return record

    def sh(self, script: str) -> str:
        res = self.lab.exec(self.lab.ref, "server", ["sh", "-c", script], timeout=120)
        assert res.ok, res
        return str(res.stdout)

    def checks(self, task: str, *, reboot: bool = False) -> dict[str, bool]:
        """Each check's verdict by its position ("0", "1"), and the task's as "task"."""
        report = lifecycle.check(self.lab, self.record, self.store, [task], reboot=reboot)
        [result] = report.tasks
        verdicts = {str(i): c.passed for i, c in enumerate(result.checks)}
        return {**verdicts, "task": result.passed}

    def solve(self, *tasks: str) -> None:
        lifecycle.solve(self.lab, self.record, self.store, list(tasks))

    def reset(self) -> None:
        lifecycle.reset(self.lab, self.record, self.store, lifecycle.Silent())

    def fstab_line(self, *lines: str, mount: str | None = None) -> None:
        """`lines` as the fstab lines of /srv/... and /mnt/..., then mounted: `mount -a`,
        or `mount MOUNT` (a `noauto` line)."""
        vol = self.volume
        self.sh(
            f"umount -q {self.mnt}; umount -q {self.mnt}; umount -q /mnt/{vol}; mkdir -p {self.mnt} /mnt/{vol} && "
            f"sed -i '\\# /srv/{vol} #d; \\# /mnt/{vol} #d' /etc/fstab && "
            f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} >> /etc/fstab && "
            f"systemctl daemon-reload && mount {mount or '-a'}"
        )


@pytest.fixture(scope="module")
def disk_lab() -> Iterator[Lab]:
    engine("vagrant")
    store = Store()
    lab = lifecycle.prepare("data-disk", student_id(), "vagrant")
    removed: dict[str, Any] = {}
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        yield Lab(lab, store)
        # as after a crash: the store forgets the lab and its directory (meta.json) goes;
        # `gc` finds the domain by its labels, and its extra disk must go with it
        store.delete_lab(lab.ref.key)
        shutil.rmtree(lab_dir(lab.ref))
        removed = teardown.gc(store)
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)  # idempotent
        store.close()
    assert lab.ref.key in removed.get("vagrant", {}), removed
    assert all(b.find(lab.ref) == {} for b in lab.backends)
    prefix = domain_prefix(lab.ref)
    left = [v for v in libvirt.virsh("vol-list", libvirt.POOL).split() if v.startswith(prefix)]
    assert left == [], left


def test_the_lab_is_proven_on_the_module_vm(disk_lab: Lab) -> None:
    proof = prove_up_lab(disk_lab.lab, disk_lab.store, lifecycle.Silent())
    assert proof.ok, "\n".join(f"{s.name}: {'ok' if s.ok else s.detail}" for s in proof.steps)
    assert proof.steps[-1].name == "every task fails after reset"
    assert f"{MOUNT} passes after its solution and a reboot" in [s.name for s in proof.steps]


def test_the_vm_has_its_data_disk_and_wrong_answers_to_find_it_fail(disk_lab: Lab) -> None:
    lab = disk_lab
    assert lab.sh("lsblk -dno NAME,SIZE,TYPE | sort").split() == [
        *("vda", "4G", "disk"),
        *("vdb", "1G", "disk"),
    ]
    for wrong in ("/dev/vda", "/dev/vda1"):
        lab.sh(f"echo {wrong} > /root/data-disk")
        assert not lab.checks(FIND)["task"], wrong
    # an imitation: a 1G device of the student's own making
    loop = lab.sh("truncate -s 1G /root/fake.img && losetup -f --show /root/fake.img").strip()
    lab.sh(f"echo {loop} > /root/data-disk")
    assert loop.startswith("/dev/loop") and not lab.checks(FIND)["task"]
    for right in ("/dev/vdb", "vdb"):
        lab.sh(f"echo {right} > /root/data-disk")
        assert lab.checks(FIND)["task"], right


def test_only_ext4_with_the_label_on_the_data_disk_itself_passes(disk_lab: Lab) -> None:
    lab, vol = disk_lab, disk_lab.volume
    assert not lab.checks(FS)["task"]  # an empty disk
    cases = {
        "ext2, not ext4": f"mkfs.ext2 -q -F -L {vol} {DATA}",
        "ext3, not ext4": f"mkfs.ext3 -q -F -L {vol} {DATA}",
        "no label": f"mkfs.ext4 -q -F {DATA}",
        "a neighbour's label": f"mkfs.ext4 -q -F -L {vol}x {DATA}",
        # the right file system in a file the student owns, the disk left empty
        "in a loop file": f"wipefs -qa {DATA} && truncate -s 1G /root/vol.img && "
        f"mkfs.ext4 -q -F -L {vol} /root/vol.img && losetup -f /root/vol.img",
        # a label written where blkid looks, on a disk that holds no ext4
        "a forged label": f"mkswap -L {vol} {DATA} >/dev/null",
    }
    for why, script in cases.items():
        lab.sh(script)
        assert not lab.checks(FS)["task"], why
    lab.solve(FS)
    assert lab.sh(f"blkid -s TYPE -s LABEL -o value {DATA}").split() == [vol, "ext4"]
    assert lab.checks(FS)["task"]
    lab.reset()
    assert lab.sh(f"blkid -p {DATA} || echo none").strip() == "none"  # reset empties the disk
    assert not lab.checks(FIND)["task"] and not lab.checks(FS)["task"]


def test_a_mount_that_lasts_only_until_the_reboot_fails(disk_lab: Lab) -> None:
    """Through real reboots: mounted by hand (its fstab line `noauto`), and by device
    name."""
    lab, mnt = disk_lab, disk_lab.mnt
    lab.solve(FS, MOUNT)
    # the solved state passes check by check; only the reboot is missing
    assert lab.checks(MOUNT) == {"0": True, "1": True, "task": False}
    uuid = lab.sh(f"blkid -s UUID -o value {DATA}").strip()
    lab.fstab_line(f"UUID={uuid} {mnt} ext4 noauto 0 2", mount=mnt)  # by hand
    assert lab.checks(MOUNT)["0"]
    assert lab.checks(MOUNT, reboot=True) == {"0": False, "1": False, "task": False}
    assert lab.sh(f"findmnt -n {mnt} || echo none").strip() == "none"
    # by device name: mounted after the reboot, but not by UUID
    lab.fstab_line(f"/dev/vdb {mnt} ext4 defaults,nofail 0 2")
    assert lab.checks(MOUNT, reboot=True) == {"0": True, "1": False, "task": False}
    assert lab.sh(f"findmnt -no SOURCE {mnt}").strip() == "/dev/vdb"


def test_imitations_of_the_fstab_mount_fail(disk_lab: Lab) -> None:
    """States that fstab makes, so a reboot brings them back as they are; each fails the
    check that a solved lab passes."""
    lab, mnt, vol = disk_lab, disk_lab.mnt, disk_lab.volume
    lab.reset()
    lab.solve(FS, MOUNT)
    uuid = lab.sh(f"blkid -s UUID -o value {DATA}").strip()
    root = lab.sh("findmnt -no UUID /").strip()
    cases: dict[str, tuple[tuple[str, ...], str]] = {
        "another mount point": ((f"UUID={uuid} /mnt/{vol} ext4 defaults,nofail 0 2",), "01"),
        # the UUID of the root file system, written by hand: /srv/... is another one
        "another file system's UUID": ((f"UUID={root} {mnt} ext4 defaults,nofail 0 2",), "01"),
        "a tmpfs, the UUID in a comment": (
            (f"# UUID={uuid} {mnt} ext4", f"tmpfs {mnt} tmpfs"),
            "01",
        ),
        "a loop file": ((f"/root/vol.img {mnt} ext4 loop,nofail 0 2",), "01"),
        "by UUID, never at boot": ((f"UUID={uuid} {mnt} ext4 noauto 0 2",), "1"),
    }
    lab.sh("truncate -s 64M /root/vol.img && mkfs.ext4 -q /root/vol.img")
    for why, (lines, failing) in cases.items():
        lab.fstab_line(*lines, mount=mnt if "noauto" in lines[0] else None)
        verdicts = lab.checks(MOUNT)
        assert [i for i in "01" if not verdicts[i]] == list(failing), (why, verdicts)
    # a non-ext4 file system on the data disk, named by its own UUID
    lab.sh(f"umount {mnt}; umount /mnt/{vol}; mkfs.ext2 -q -F -L {vol} {DATA}")
    uuid = lab.sh(f"blkid -s UUID -o value {DATA}").strip()
    lab.fstab_line(f"UUID={uuid} {mnt} ext2 defaults,nofail 0 2")
    assert lab.checks(MOUNT) == {"0": False, "1": True, "task": False}
    assert not lab.checks(FS)["task"]
