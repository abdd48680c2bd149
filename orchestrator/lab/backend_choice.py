"""Which backend a lab runs on, refused before anything is created if it cannot do the job."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator import backends
from orchestrator.backends.contract import Backend, MachineRemoval, StartCopies
from orchestrator.errors import UsageError
from orchestrator.lab.bound import VM_BACKEND
from orchestrator.messages import _
from orchestrator.scenario.model import Machine, Scenario


def required_capabilities(
    scenario: Scenario, machines: Sequence[Machine] | None = None
) -> set[str]:
    """What a backend must support to hold `machines` (default: all) of the scenario."""
    chosen = scenario.machines if machines is None else machines
    need = {"snapshot"}
    if any(scenario.root_of(m.name).init in (None, "systemd") for m in chosen):
        need.add("systemd")
    if any(m.clone_of for m in chosen):
        need.add("clone")
    # extra disks are block devices of a virtual machine
    if any(scenario.root_of(m.name).kind == "vm" or m.disks for m in chosen):
        need.add("vm")
    return need


def choose_backend(scenario: Scenario, name: str | None) -> Backend:
    """The backend to run on, refused before anything is created if it cannot do the job."""
    chosen = name or scenario.backends[0]
    if chosen not in scenario.backends:
        raise UsageError(
            _("scenario {id} does not support the {backend} backend").format(
                id=scenario.id, backend=chosen
            ),
            hint=_("it supports: {names}").format(names=", ".join(scenario.backends)),
        )
    backend = backends.get(chosen)
    # `kind: vm` machines of a container lab go to the VM backend; the rest stay here
    own = [m for m in scenario.machines if scenario.root_of(m.name).kind != "vm"]
    if "vm" in backend.capabilities:
        own = list(scenario.machines)
    elif len(own) < len(scenario.machines):
        vm = backends.get(VM_BACKEND)
        if "vm" not in vm.capabilities:
            # Vagrant's docker provider makes containers: a lab about telling a VM from a
            # container would grade a container as the VM
            raise UsageError(
                _(
                    "{id} needs a real virtual machine, and the {vm_backend} backend here"
                    " makes {virtualization} containers, not VMs"
                ).format(id=scenario.id, vm_backend=VM_BACKEND, virtualization=vm.virtualization),
                hint=_("make libvirt usable (`guestlab doctor` says what is missing)"),
            )
    needed = required_capabilities(scenario, own)

    def lacks(candidate: Backend) -> set[str]:
        return (needed - candidate.capabilities) | _grading_needs(candidate, own)

    missing = lacks(backend)
    if missing:
        others = [b for b in scenario.backends if not lacks(backends.get(b))]
        raise UsageError(
            _("the {backend} backend lacks {what}, which {id} needs").format(
                backend=chosen, what=", ".join(sorted(missing)), id=scenario.id
            ),
            hint=_("use --backend {name}").format(name=others[0]) if others else None,
        )
    return backend


def _grading_needs(backend: Backend, own: Sequence[Machine]) -> set[str]:
    """What the backend lacks to make the grading machines it would hold (lab.grading_machines)."""
    mine = [m for m in own if m.grading is not None]
    lacks = set()
    if mine and not isinstance(backend, MachineRemoval):
        lacks.add(_("removing one machine (for grading machines)"))
    if any(m.grading and m.grading.state == "start" for m in mine) and not isinstance(
        backend, StartCopies
    ):
        lacks.add(_("copying a starting state (for grading machines)"))
    return lacks
