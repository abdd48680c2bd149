"""The lifecycle's pure parts: machine specs, clone order, backend choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import lab as lifecycle
from orchestrator.backends.contract import LabRef
from orchestrator.errors import UsageError
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.model_base import dump, parse


def scenario(machines: list[dict[str, object]], backends: list[str] | None = None) -> Scenario:
    return parse(
        Scenario,
        {
            "apiVersion": "guestlab/v1",
            "kind": "Scenario",
            "metadata": {"id": "demo", "title": "Demo"},
            "backends": backends or ["docker"],
            "machines": machines,
            "tasks": [
                {
                    "id": "t",
                    "title": "T",
                    "checks": [{"machine": machines[0]["name"], "run": "true"}],
                }
            ],
        },
    )


def make_lab(sc: Scenario) -> lifecycle.Lab:
    return lifecycle.Lab(LabRef(sc.id, "al"), sc, Path("/nowhere"), backend=None, params={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("4K", 4096), ("256M", 256 * 1024**2), ("1.5G", int(1.5 * 1024**3))],
)
def test_parse_size(text: str, size: int) -> None:
    assert lifecycle.parse_size(text) == size


def test_clones_come_after_their_sources_and_inherit_limits() -> None:
    sc = scenario(
        [
            {"name": "c2", "clone_of": "c1"},
            {"name": "c1", "clone_of": "base", "resources": {"cpus": 2}},
            {"name": "base", "init": "none", "resources": {"memory": "128M", "pids": 64}},
        ]
    )
    lab = make_lab(sc)
    assert [s.name for s in lab.specs] == ["base", "c1", "c2"]
    c1, c2 = lab.spec("c1"), lab.spec("c2")
    assert (c1.memory, c1.cpus, c1.pids, c1.init) == (128 * 1024**2, 2, 64, "none")
    assert c2.cpus == 2  # from c1, the machine it copies
    assert c2.hostname == "c2"


def test_defaults() -> None:
    spec = make_lab(scenario([{"name": "m"}])).spec("m")
    assert (spec.image, spec.init, spec.memory, spec.cpus, spec.pids) == (
        "debian-12-systemd",
        "systemd",
        512 * 1024**2,
        1.0,
        1024,
    )


def test_a_backend_the_scenario_does_not_declare_is_refused() -> None:
    with pytest.raises(UsageError, match="does not support the lxd backend"):
        lifecycle.choose_backend(scenario([{"name": "m"}], ["docker"]), "lxd")


def test_lab_keys_keep_students_apart_and_engine_safe() -> None:
    assert LabRef("demo", "Ana Maria").key == "demo--ana-maria"
    assert LabRef("demo", "../../etc").key == "demo--etc"
    assert LabRef("demo", "ana").labels("m")["guestlab.machine"] == "m"


def test_vm_machines_of_a_container_lab_go_to_the_vm_backend() -> None:
    from orchestrator import backends

    sc = scenario([{"name": "box", "kind": "vm", "init": "systemd"}, {"name": "ct"}], ["docker"])
    lab = lifecycle.Lab(LabRef(sc.id, "al"), sc, Path("/x"), backends.get("docker"), {})
    assert lab.backend_for("ct").name == "docker"
    assert lab.backend_for("box").name == "vagrant"
    assert [b.name for b in lab.backends] == ["docker", "vagrant"]
    facts = lab.machine_facts()
    assert facts["ct"] == {
        "backend": "docker",
        "kind": "container",
        "virt": "docker",
        "os": "debian",
    }
    assert facts["box"]["kind"] == "vm"


def test_machine_facts_reach_templates() -> None:
    from orchestrator import backends
    from orchestrator.scenario.render import render_scenario

    sc = scenario([{"name": "ct"}], ["docker"])
    data = dump(sc)
    data["tasks"][0]["checks"][0]["run"] = "test {{ machines.ct.virt }} = docker"
    sc = parse(Scenario, data)
    lab = lifecycle.Lab(LabRef(sc.id, "al"), sc, Path("/x"), backends.get("docker"), {})
    rendered = render_scenario(sc, {}, "al", lab.machine_facts())
    assert rendered.tasks[0].checks[0].run == "test docker = docker"


class _ContainersOnly:
    """A VM backend that makes containers: Vagrant's docker provider, for the preflight."""

    name = "vagrant"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "docker"


@pytest.mark.parametrize("chosen", ["docker", "vagrant"])
def test_a_vm_machine_is_refused_where_the_vm_backend_makes_containers(
    monkeypatch: pytest.MonkeyPatch, chosen: str
) -> None:
    from orchestrator import backends

    monkeypatch.setitem(backends._cache, "vagrant", _ContainersOnly())
    sc = scenario(
        [{"name": "box", "kind": "vm", "init": "systemd"}, {"name": "ct"}], ["docker", "vagrant"]
    )
    with pytest.raises(UsageError, match=r"needs a real virtual machine.*docker containers"):
        lifecycle.choose_backend(sc, chosen)
    # a lab without a `kind: vm` machine is none of the VM backend's business
    plain = scenario([{"name": "ct"}], ["docker", "vagrant"])
    assert lifecycle.choose_backend(plain, chosen).name == chosen
