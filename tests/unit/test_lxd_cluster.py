"""LXD clusters without LXD: names of a lab made again, placement, errors, the roster column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.backends.contract import LabRef
from orchestrator.backends.lxd.cluster import ClusterView, MemberSilent, cluster_error
from orchestrator.backends.lxd.config import instance_name
from orchestrator.classroom.roster import RosterError, parse
from orchestrator.errors import MachineUnavailable, MemberUnreachable, ProvisioningError

LAB = LabRef("machine-id-clone", "alice")


@dataclass
class Inst:
    name: str
    location: str


class Client:
    """Just enough of pylxd's client: a listing of instances."""

    def __init__(self, names: list[str]) -> None:
        self.listed = [Inst(n, "m1") for n in names]
        self.instances = self

    def all(self, **_: Any) -> list[Inst]:
        return self.listed


def test_a_lab_made_again_gets_new_names_and_the_newest_is_used() -> None:
    first, second = instance_name(LAB, "clone"), instance_name(LAB, "clone", 1)
    assert first != second and first.startswith("gl-") and second.endswith("-clone")
    view = ClusterView(ttl=0)
    assert view.name(Client([]), LAB, "clone", new=True) == first  # a fresh lab
    assert view.name(Client([first]), LAB, "clone") == first
    # its first instance is held by a member that went offline: a new incarnation
    assert view.name(Client([first]), LAB, "clone", new=True) == second
    assert view.name(Client([first, second]), LAB, "clone") == second


@pytest.mark.parametrize(
    ("said", "kind", "words"),
    [
        ("Missing event connection with target cluster member", MemberSilent, "does not answer"),
        ("Failed to begin transaction: no available dqlite leader", ProvisioningError, "quorum"),
    ],
)
def test_cluster_errors_become_one_sentence_with_the_fix(said: str, kind: type, words: str) -> None:
    err = cluster_error("create gl-1", RuntimeError(said))
    assert type(err) is kind and words in str(err) and err.hint
    assert cluster_error("create gl-1", RuntimeError("Instance not found")) is None


def test_an_unreachable_member_is_a_machine_unavailable_naming_it() -> None:
    err = MemberUnreachable("glc-2", "machine `x` is on glc-2, which is offline")
    assert isinstance(err, MachineUnavailable) and err.member == "glc-2"


def test_a_roster_may_name_each_students_cluster_member() -> None:
    students = parse("id,name,email,lxd_target\nann,Ann,,glc-3\nbob,Bob,,\n")
    assert [(s.id, s.lxd_target) for s in students] == [("ann", "glc-3"), ("bob", "")]
    assert parse("id,name,email\nann,Ann,\n")[0].lxd_target == ""
    with pytest.raises(RosterError) as refused:
        parse("id,name,email,target\nann,Ann,,x\n")
    assert "unknown column(s) 'target'" in refused.value.problems[0]
