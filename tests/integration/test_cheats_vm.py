"""On a real VM (one boot: they are slow under emulation), a fake `dbus-uuidgen` and
`systemctl`, a replaced `cat` and `stat` and a FIFO as the checked file do not pass: the
probes run under the host's busybox there too, and the machine binaries they run are
compared with the manifest of the box the VM booted from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.images import boxmanifest
from orchestrator.images.box import box_path
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id
from tests.integration.test_cheats import WANT_ID, cheat_scenario

pytestmark = pytest.mark.vagrant

IMAGE = "debian-12-systemd"  # the scenario's; the box whose manifest the VM is compared with
#: the container tests' scenario, with the longer probe timeouts emulation needs
SCENARIO = cheat_scenario("cheat-probes-vm", "One VM", "vagrant", 10, file_timeout=True)
ANSWERS = ("file-read", "cat-run", "stat-run")


class VM:
    """The lab's one VM: commands in it, and its checks."""

    def __init__(self, lab: Any, store: Store) -> None:
        self.lab, self.store = lab, store
        lifecycle.up(lab, store, lifecycle.Silent())
        record = store.lab(lab.ref.key)
        assert record is not None
        self.record = record

    def sh(self, script: str) -> str:
        res = self.lab.exec(self.lab.ref, "box", ["sh", "-c", script], timeout=60)
        assert res.ok, res
        return str(res.stdout)

    def check(self) -> dict[str, Any]:
        return {t.id: t for t in lifecycle.check(self.lab, self.record, self.store).tasks}

    def passed(self) -> dict[str, bool]:
        return {name: task.passed for name, task in self.check().items()}


def fake_dbus_uuidgen_and_systemctl(vm: VM) -> None:
    """Fakes that print what the checks want are named tampered, and only what runs them."""
    vm.sh(
        "cp -p /usr/bin/dbus-uuidgen /usr/bin/systemctl /root/ && "
        f"printf '#!/bin/sh\\necho {WANT_ID}\\n' > /usr/bin/dbus-uuidgen && "
        "printf '#!/bin/sh\\necho active; echo enabled\\n' > /usr/bin/systemctl.new && "
        "chmod 755 /usr/bin/dbus-uuidgen /usr/bin/systemctl.new && "
        "mv /usr/bin/systemctl.new /usr/bin/systemctl && "
        # the real ID is not the wanted one any more: only the fake says it is
        f"printf '%s\\n' {'f' * 32} > /etc/machine-id"
    )
    assert vm.sh("dbus-uuidgen --get; systemctl is-active x").split() == [
        WANT_ID,
        "active",
        "enabled",
    ]
    said = {name: " ".join(c.message for c in t.checks) for name, t in vm.check().items()}
    assert "tampered: /usr/bin/dbus-uuidgen differs from the image" in said["dbus"], said
    assert "tampered: /usr/bin/systemctl differs from the image" in said["service"], said
    assert not any("tampered" in said[t] for t in ANSWERS), said
    vm.sh(
        "mv /root/dbus-uuidgen /root/systemctl /usr/bin/ && " + f"echo {WANT_ID} > /etc/machine-id"
    )
    assert all(vm.passed().values())  # the box's own binaries again


def replace_cat_and_stat(vm: VM) -> None:
    """Scripts in place of `cat` and `stat` fool the VM's own tools, not its checks."""
    vm.sh(
        "cp -p /usr/bin/cat /usr/bin/stat /root/ && "
        "printf '7\\n' > /root/answer && chmod 644 /root/answer && "
        "printf '#!/bin/sh\\necho 42\\n' > /usr/bin/cat.new && "
        "printf '#!/bin/sh\\necho 600\\n' > /usr/bin/stat.new && "
        "chmod 755 /usr/bin/cat.new /usr/bin/stat.new && "
        "mv /usr/bin/cat.new /usr/bin/cat && mv /usr/bin/stat.new /usr/bin/stat"
    )
    # the cheat works for the VM's own tools (asked by exit code: the VM's exec prints
    # its output through `cat`, which now says 42 to everything)
    vm.sh('test "$(cat /root/answer)" = 42 && test "$(stat -c %a /root/answer)" = 600')
    assert not any(vm.passed().values())
    vm.sh("mv /root/cat /root/stat /usr/bin/")


def feed_a_fifo(vm: VM) -> None:
    """A FIFO fed by `yes` as the checked file fails its checks, quickly."""
    vm.sh(
        "rm /root/answer && mkfifo /root/answer && (sh -c 'yes 42 > /root/answer' </dev/null >/dev/null 2>&1 &)"
    )
    started = time.monotonic()
    tasks = vm.check()
    assert time.monotonic() - started < 60
    assert not any(tasks[t].passed for t in ANSWERS)
    assert "not a regular file" in tasks["file-read"].checks[0].message


def test_a_vm_s_replaced_binaries_and_a_fifo_do_not_pass(tmp_path: Path) -> None:
    engine("vagrant")
    path = tmp_path / "scenarios" / "cheat-probes-vm.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    store = Store()
    lab = lifecycle.prepare(str(path), student_id(), "vagrant")
    try:
        vm = VM(lab, store)
        lifecycle.solve(lab, vm.record, store)
        # the checks can pass: an untouched VM's binaries are the box's, compared with the
        # box's manifest (a box built before manifests gets it from its disk, first use)
        assert all(vm.passed().values())
        assert boxmanifest.cache_path(box_path(IMAGE)).exists()
        fake_dbus_uuidgen_and_systemctl(vm)
        replace_cat_and_stat(vm)
        feed_a_fifo(vm)
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
        store.close()
