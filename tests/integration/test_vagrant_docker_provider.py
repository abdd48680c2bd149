"""Vagrant's docker provider end to end, on the real Docker engine and Vagrant.

For hosts with neither libvirt nor VirtualBox (GUESTLAB_VAGRANT_PROVIDER=docker picks it
anywhere): Vagrant makes containers, and everything that asks must hear that they are not
virtual machines. A lab of two machines (one a clone) comes up, is graded, solved, reset
and removed through the `guestlab` command, in well under a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator import lab as lifecycle
from orchestrator.backends.contract import LabRef
from orchestrator.backends.vagrant import VagrantBackend
from orchestrator.backends.vagrant.host import lab_dir
from orchestrator.errors import UsageError
from orchestrator.scenario.load import load_file
from tests.integration.conftest import ROOT, docker_leftovers, engine, guestlab, student_id

pytestmark = [pytest.mark.vagrant, pytest.mark.docker]

ENV = {"GUESTLAB_VAGRANT_PROVIDER": "docker", "COLUMNS": "200"}
SCENARIO_ID = "vagrant-docker-provider"
# what a student would write in the lab: the machine's own answer to "VM or container?"
ANSWER = (
    'printf "%s %s\\n" "$(systemd-detect-virt)" '
    '"$(systemd-detect-virt -q --container && echo container || echo vm)" > /root/answer'
)
SCENARIO = f"""\
apiVersion: guestlab/v1
kind: Scenario
metadata:
  id: {SCENARIO_ID}
  title: Vagrant's docker provider says what it is
  level: beginner
description: A template and its clone, made by Vagrant's docker provider.
backends: [vagrant]
parameters:
  machine_id:
    random: hex
    length: 32
machines:
  - name: template
    image: debian-12-systemd
    hostname: template
    resources: {{memory: 256M, cpus: 1}}
  - name: copy
    clone_of: template
    hostname: copy
setup:
  - machine: template
    run: printf '%s\\n' "{{{{ params.machine_id }}}}" > /etc/machine-id
tasks:
  - id: what-am-i
    title: Say what the clone is
    instructions: Write what systemd-detect-virt says, and vm or container, to /root/answer.
    checks:
      - name: /root/answer names the virtualization and the kind
        machine: copy
        file:
          path: /root/answer
          matches: '^{{{{ machines.copy.virt }}}} {{{{ machines.copy.kind }}}}$'
    solution:
      - machine: copy
        run: {json.dumps(ANSWER)}
"""


@pytest.fixture(scope="module")
def provider() -> Iterator[VagrantBackend]:
    """The vagrant backend on its docker provider (a fresh one: the choice is made once)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUESTLAB_VAGRANT_PROVIDER", "docker")
        mp.setitem(backends._cache, "vagrant", VagrantBackend())
        engine("docker")
        backend = engine("vagrant")
        assert isinstance(backend, VagrantBackend)
        yield backend


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / f"{SCENARIO_ID}.yaml"
    path.write_text(textwrap.dedent(SCENARIO))
    return path


def test_it_says_it_makes_no_vm(provider: VagrantBackend) -> None:
    state = provider.availability()
    assert state.usable and "docker provider (NOT a real VM" in state.detail
    assert provider.virtualization == "docker"
    assert "vm" not in provider.capabilities
    assert {"systemd", "clone", "snapshot"} <= provider.capabilities
    doctor = guestlab("doctor", env=ENV)
    row = next(line for line in doctor.stdout.splitlines() if "vagrant" in line)
    assert "NOT a real VM" in row, doctor.stdout


def test_a_scenario_that_needs_a_vm_is_refused(provider: VagrantBackend) -> None:
    # guest-drivers studies virtio drivers: a container has none, so no lab is better
    scenario = load_file(ROOT / "scenarios" / "guest-drivers.yaml")
    with pytest.raises(UsageError, match="needs a real virtual machine"):
        lifecycle.choose_backend(scenario, "vagrant")


def test_a_lab_runs_end_to_end(provider: VagrantBackend, scenario_file: Path) -> None:
    student = student_id()
    key = LabRef(SCENARIO_ID, student).key

    def run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return guestlab(command, "--student", student, *args, env=ENV, timeout=300)

    up = run("up", str(scenario_file), "--backend", "vagrant")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        virt = run("exec", SCENARIO_ID, "template", "--", "systemd-detect-virt")
        assert virt.stdout.strip() == "docker", virt
        # the clone is a copy: the machine ID set up in the template came along
        ids = [
            run("exec", SCENARIO_ID, m, "--", "cat", "/etc/machine-id").stdout
            for m in ("template", "copy")
        ]
        assert ids[0] == ids[1] and len(ids[0].strip()) == 32
        assert run("exec", SCENARIO_ID, "copy", "--", "hostname").stdout.strip() == "copy"
        vagrantfile = (lab_dir(LabRef(SCENARIO_ID, student)) / "Vagrantfile").read_text()
        assert "NOT a real VM" in vagrantfile and "m.vm.provider :docker" in vagrantfile

        failing = run("check", SCENARIO_ID, "--format", "json")
        assert failing.returncode == 1, failing.stdout + failing.stderr
        assert run("solve", SCENARIO_ID).returncode == 0
        # the check was rendered from the machine facts: they say docker and container
        passing = run("check", SCENARIO_ID, "--format", "json")
        assert passing.returncode == 0, passing.stdout
        assert json.loads(passing.stdout)["score"] == 1
        assert run("reset", SCENARIO_ID).returncode == 0
        assert run("check", SCENARIO_ID).returncode == 1
        assert key in provider.find()
    finally:
        down = run("down", SCENARIO_ID)
    assert down.returncode == 0, down.stdout + down.stderr
    assert docker_leftovers(key) == []
    assert not lab_dir(LabRef(SCENARIO_ID, student)).exists()
    assert provider.find(LabRef(SCENARIO_ID, student)) == {}


def test_down_finds_a_lab_whose_directory_was_lost(provider: VagrantBackend) -> None:
    """Labels, not the lab's directory, are the source of truth (a crash can lose it)."""
    from orchestrator.backends.contract import MachineSpec, no_progress

    lab = LabRef("vagrant-docker-lost", student_id())
    provider.ensure_image("debian-12-systemd", no_progress)
    provider.create(MachineSpec(lab, "m", "debian-12-systemd", init="none"), no_progress)
    try:
        provider.snapshot(lab, [MachineSpec(lab, "m", "debian-12-systemd", init="none")])
        shutil.rmtree(lab_dir(lab))
        assert provider.find(lab)[lab.key].machines == ["m"]
    finally:
        gone = provider.destroy(lab)
    assert gone.machines == ["m"] and any(o.startswith("image ") for o in gone.other)
    assert docker_leftovers(lab.key) == []
