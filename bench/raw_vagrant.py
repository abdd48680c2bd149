"""A lab's VMs by hand with Vagrant + vagrant-libvirt, as an engineer would script them.

`up` writes a Vagrantfile of its own, runs `vagrant up`, copies the files, runs the setup
and saves the starting state as a libvirt snapshot; commands run over plain ssh with the
output of `vagrant ssh-config`, one shared connection per machine (what a seasoned user
does, and what guestlab does: `vagrant ssh -c` costs seconds of Ruby per command).
"""

from __future__ import annotations

import contextlib
import math
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from raw import Raw, sh, wait_running

from orchestrator import paths
from orchestrator.backends.vagrant.libvirt import POOL, kvm_status
from orchestrator.checks import probes
from orchestrator.images.box import box_name
from orchestrator.lab import Lab
from orchestrator.scenario.load import source_path

# Off as guestlab has them off: otherwise each `vagrant` command may call home first
ENV = ["env", "VAGRANT_CHECKPOINT_DISABLE=1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE=1"]
# outside guestlab's 192.168.128.0/17, so that both labs of a round can run side by side
SUBNET = "192.168.121.0/24"


class RawVagrant(Raw):
    def __init__(self, lab: Lab, tag: str) -> None:
        super().__init__(lab, tag)
        self.root = paths.home() / "raw-vagrant" / tag
        self.kvm = kvm_status()[0]  # the answer guestlab's probe cached: the same engine

    def vagrant(self, *args: str) -> str:
        # VAGRANT_CWD per command, not in os.environ: the guestlab runs would inherit it
        return sh([*ENV, f"VAGRANT_CWD={self.root}", "vagrant", *args])

    def ssh(self, machine: str) -> list[str]:
        return ["ssh", "-F", str(self.root / "ssh-config"), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=15", "-o", f"ControlPath={self.root / machine}.ctl",
                machine]  # fmt: skip

    def exec_prefix(self, machine: str) -> list[str]:
        return [*self.ssh(machine), "sudo", "-n", "--"]

    def run(
        self, machine: str, argv: Sequence[str], *, check: bool = True, stdin: Any = None
    ) -> str:
        # ssh hands the remote shell one string: quote argv, or `sh -c SCRIPT` falls apart
        return sh([*self.exec_prefix(machine), shlex.join(argv)], check=check, stdin=stdin)

    def check(self) -> None:
        for task in self.lab.scenario.tasks:
            for c in task.checks:
                for p in probes(c):
                    self.run(p.machine, p.argv, check=False)

    def setup(self) -> None:
        for step in self.lab.scenario.setup:
            self.run(step.machine, ["sh", "-c", step.run])

    def connect(self, machine: str) -> None:
        """The shared connection, started apart: a ControlPersist master left in the
        background by a captured command would hold its pipes open."""
        subprocess.run(
            [*self.ssh(machine)[:-1], "-o", "ControlMaster=yes", "-o", "ControlPersist=300",
             "-f", "-N", machine],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=60, check=False,
        )  # fmt: skip

    def disconnect(self, machine: str) -> None:
        sh([*self.ssh(machine)[:-1], "-O", "exit", machine], check=False)

    def vagrantfile(self) -> str:
        lines = [
            'Vagrant.configure("2") do |config|',
            # no NFS or rsync shared folder: files go in over ssh, as guestlab's do
            '  config.vm.synced_folder ".", "/vagrant", disabled: true',
            "  config.vm.provider :libvirt do |lv|",
            f'    lv.storage_pool_name = "{POOL}"',  # where guestlab put the box's disk
            # fair: an isolated network of the lab's own as guestlab's, but made by
            # vagrant-libvirt itself (and removed by `vagrant destroy`)
            f'    lv.management_network_name = "raw{self.tag}"',
            f'    lv.management_network_address = "{SUBNET}"',
            '    lv.management_network_mode = "none"',
            '    lv.graphics_type = "none"',
            f'    lv.default_prefix = "raw{self.tag}-"',
        ]
        if self.kvm:
            lines += ['    lv.driver = "kvm"', '    lv.cpu_mode = "host-passthrough"']
        else:  # the default (kvm) cannot start here: the same emulated CPU as guestlab's
            lines += ['    lv.driver = "qemu"', '    lv.cpu_mode = "custom"',
                      '    lv.cpu_model = "qemu64"']  # fmt: skip
        lines.append("  end")
        for m in self.lab.originals:
            spec = self.lab.spec(m.name)
            # no m.vm.hostname: it costs half a minute under emulation; set over ssh below
            lines += [
                f'  config.vm.define "{m.name}" do |m|',
                f'    m.vm.box = "{box_name(spec.image)}"',
                "    m.vm.provider :libvirt do |lv|",
                f"      lv.memory = {max(256, spec.memory // 1024**2)}",  # MiB, as guestlab
                f"      lv.cpus = {max(1, math.ceil(spec.cpus))}",
                "    end",
                "  end",
            ]
        return "\n".join([*lines, "end", ""])

    def up(self) -> None:
        lab = self.lab
        if lab.clones:
            raise NotImplementedError(
                "raw vagrant: clones (a copy of a VM's disk after setup) are not scripted "
                "here; guestlab copies the qcow2 overlay with virsh"
            )
        self.root.mkdir(parents=True)
        (self.root / "Vagrantfile").write_text(self.vagrantfile())
        self.vagrant("up", "--provider", "libvirt")  # every machine, vagrant-libvirt in parallel
        (self.root / "ssh-config").write_text(self.vagrant("ssh-config"))
        for m in lab.originals:
            self.connect(m.name)
            host = lab.spec(m.name).hostname or m.name
            script = (
                'echo "$1" > /etc/hostname && hostname "$1" && echo "127.0.1.1 $1" >> /etc/hosts'
            )
            self.run(m.name, ["sh", "-c", script, "sh", host])
            wait_running(self.exec_prefix(m.name))
            for f in m.files:
                src = source_path(lab.path, lab.scenario, f.src)
                put = 'cat > "$1" && chmod "$2" "$1"'
                with open(src, "rb") as data:
                    self.run(m.name, ["sh", "-c", put, "sh", f.dest, f.mode or "644"], stdin=data)
        self.setup()
        for s in lab.specs:
            # a running domain: memory too, so a revert needs no boot (as guestlab's);
            # `vagrant snapshot save` makes the same libvirt snapshot after a Ruby start-up
            sh(["virsh", "-c", "qemu:///system", "snapshot-create-as", self.name(s.name), "start",
                "--atomic"])  # fmt: skip

    def reset(self) -> None:
        for s in self.lab.specs:
            self.disconnect(s.name)  # the guest's end of the connection goes back too
            sh(["virsh", "-c", "qemu:///system", "snapshot-revert", self.name(s.name), "start",
                "--running"])  # fmt: skip
        for s in self.lab.specs:
            wait_running(self.exec_prefix(s.name))
            self.connect(s.name)

    def down(self) -> None:
        for s in self.lab.specs:
            self.disconnect(s.name)
        # deletes the snapshots first, then the domains, their disks and the network
        self.vagrant("destroy", "-f")
        shutil.rmtree(self.root)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()  # raw-vagrant/ itself, once no other run uses it
