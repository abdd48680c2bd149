"""The Vagrant backend's package without an engine: what it loads, the Vagrantfile's Ruby
literals, and its docker provider going only through the docker package's public functions
and its one confinement description."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound, NotFound

from orchestrator.backends.contract import LabRef, MachineSpec
from orchestrator.backends.docker.confine import Confinement
from orchestrator.backends.docker.resources import Resources
from orchestrator.backends.vagrant import docker_provider, machines
from orchestrator.backends.vagrant.vagrantfile import ruby

ROOT = Path(__file__).resolve().parents[2]
SPEC = MachineSpec(LabRef("demo", "ana"), "web", "debian-12-systemd", memory=256 * 1024**2)


def test_importing_the_backend_loads_no_engine_sdk() -> None:
    """The registry imports the package when a lab needs it; a libvirt host never needs
    the docker SDK, and python-vagrant and Jinja2 load at the first command."""
    code = (
        "import sys\n"
        "from orchestrator import backends\n"
        "backends.get('vagrant')\n"
        "print('loaded:', [m for m in ('docker', 'pylxd', 'vagrant', 'jinja2') "
        "if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip().endswith("loaded: []"), proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("web", "'web'"),
        ("#{`id`}", "'#{`id`}'"),  # single quotes: Ruby interpolates nothing
        ("it's", "'it\\'s'"),
        ("a\\", "'a\\\\'"),
        (True, "true"),
        (640, "640"),
        (["--cpus", 1.5], "['--cpus', 1.5]"),
    ],
)
def test_ruby_literals(value: Any, literal: str) -> None:
    assert ruby(value) == literal


class _NoClient:
    """A docker backend whose SDK client must not be touched: only public functions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.resources = self

    @property
    def client(self) -> Any:
        raise AssertionError("the docker provider drove DockerBackend.client directly")

    def confinement(self, spec: MachineSpec, network: str, labels: dict[str, str]) -> Confinement:
        return Confinement(spec, network, labels, disk=None)

    def ensure_network(self, lab: LabRef, labels: dict[str, str], name: str | None = None) -> str:
        self.calls.append(("ensure_network", labels))
        return name or ""

    def subnet(self, network: str) -> str:
        self.calls.append(("subnet", network))
        return "172.30.0.0/16"

    def commit(
        self, spec: MachineSpec, tag: str, labels: dict[str, str], *, repo: str | None = None
    ) -> str:
        self.calls.append(("commit", (tag, labels, repo)))
        return f"{repo}:{tag}"

    def has_image(self, ref: str) -> bool:
        self.calls.append(("has_image", ref))
        return True

    def remove_container(self, name: str) -> None:
        self.calls.append(("remove_container", name))


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> _NoClient:
    fake = _NoClient()
    monkeypatch.setattr(docker_provider, "docker_backend", lambda: fake)
    return fake


def test_a_docker_provider_machine_gets_the_one_confinement(engine: _NoClient) -> None:
    meta = {"provider": "docker", "network": {"name": "gl-net"}}
    entry = machines.machine_entry(SPEC, meta)
    labels = {**SPEC.labels, docker_provider.LABEL_PROVIDER: "docker"}
    conf = Confinement(SPEC, "gl-net", labels, disk=None)
    assert entry["docker_args"] == conf.cli_args() and entry["docker_cmd"] == conf.command
    assert "guestlab.vagrant-provider=docker" in entry["docker_args"]
    assert "--privileged" not in entry["docker_args"]
    # the docker backend's name: its exec and files serve the machine
    assert entry["domain"] == "gl-demo--ana-web"
    assert entry["docker_image"] == "guestlab/debian-12-systemd:latest"


def test_the_docker_provider_uses_public_functions_only(engine: _NoClient) -> None:
    provider = docker_provider.DockerProvider()
    assert provider.ensure_network(SPEC.lab) == "172.30.0.0/16"
    ref = provider.commit(SPEC, "web-start", SPEC.labels)
    assert ref == f"{docker_provider.image_repo(SPEC.lab)}:web-start"
    assert provider.has_image(ref)
    provider.remove(SPEC.lab, "web")
    kinds = [c[0] for c in engine.calls]
    assert kinds == ["ensure_network", "subnet", "commit", "has_image", "remove_container"]
    tag, labels, repo = engine.calls[2][1]
    assert tag == "web-start"
    assert labels[docker_provider.LABEL_PROVIDER] == "docker" and repo.startswith("guestlab/")
    assert engine.calls[-1] == ("remove_container", "gl-demo--ana-web")


class _Items:
    def __init__(self, items: dict[str, Any], missing: type[Exception]) -> None:
        self.items, self.missing = items, missing

    def get(self, name: str) -> Any:
        if name not in self.items:
            raise self.missing(f"{name} not found")
        return self.items[name]


class _Container:
    def __init__(self) -> None:
        self.removed: dict[str, Any] = {}

    def remove(self, **kwargs: Any) -> None:
        self.removed.update(kwargs)


class _Network:
    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs


def test_docker_resources_the_provider_uses() -> None:
    client = type("Client", (), {})()
    client.networks = _Items(
        {
            "lab": _Network({"IPAM": {"Config": [{"Subnet": "172.30.0.0/16"}]}}),
            "bare": _Network({"IPAM": None}),
        },
        NotFound,
    )
    client.images = _Items({"guestlab/vagrant-x:web-start": object()}, ImageNotFound)
    container = _Container()
    client.containers = _Items({"gl-x-web": container}, NotFound)
    res = Resources(client)
    assert res.subnet("lab") == "172.30.0.0/16"
    assert res.subnet("bare") == "bare"  # the engine says none: the name stands in
    assert res.has_image("guestlab/vagrant-x:web-start")
    assert not res.has_image("guestlab/vagrant-x:gone")
    res.remove_container("gl-x-gone")  # already gone: nothing to do
    res.remove_container("gl-x-web")
    assert container.removed == {"force": True, "v": True}


#: what vagrant.log holds when the docker provider's look at every container of the host
#: meets one that another lab removed meanwhile (from a CI run of 2026-12-03)
VANISHED = """\
A Docker command executed by Vagrant didn't complete successfully!
Command: ["docker", "inspect", "ceeb7cf616b7", {:notify=>[:stdout, :stderr]}]

Stderr: Error: No such object: ceeb7cf616b7
"""


class _Vagrant:
    """python-vagrant's handle whose `up` fails with `said` in the log, then succeeds."""

    def __init__(self, log: Path, said: list[str]) -> None:
        self.log, self.said, self.ups = log, said, 0

    def up(self, **_: Any) -> Any:
        self.ups += 1
        if self.said:
            self.log.write_text(self.said.pop(0))
            raise subprocess.CalledProcessError(1, ["vagrant", "up"])
        yield "==> web: Starting container...\n"


@pytest.mark.parametrize(
    ("said", "ups"),
    [
        ([VANISHED], 2),  # the other container is gone: the second look succeeds
        ([VANISHED, VANISHED], 2),  # twice in a row: given up after two
        (["Stderr: Error: No such image: guestlab/vagrant-x:web-start\n"], 1),
    ],
)
def test_a_docker_provider_up_is_tried_again_only_when_another_container_vanished(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, said: list[str], ups: int
) -> None:
    from orchestrator.backends.vagrant import command

    monkeypatch.setattr(command, "lab_dir", lambda lab: tmp_path)
    monkeypatch.setattr(command.paths, "home", lambda: tmp_path)
    fake = _Vagrant(tmp_path / "vagrant.log", list(said))
    monkeypatch.setattr(command, "vagrant_for", lambda lab: fake)
    steps: list[str] = []
    fails = len(said) >= ups
    if fails:
        with pytest.raises(command.ProvisioningError, match="No such"):
            command.up(SPEC.lab, "web", "docker", steps.append)
    else:
        command.up(SPEC.lab, "web", "docker", steps.append)
        assert steps[-1] == "web: Starting container..."
    assert fake.ups == ups
