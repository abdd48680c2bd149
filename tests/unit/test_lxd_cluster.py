"""LXD clusters without LXD: names of a lab made again, placement, errors, the roster column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator import messages, paths
from orchestrator.backends.contract import LabRef
from orchestrator.backends.lxd.cluster import ClusterView, MemberSilent, cluster_error
from orchestrator.backends.lxd.config import instance_name
from orchestrator.classroom.roster import RosterError, parse
from orchestrator.errors import MachineUnavailable, MemberUnreachable, ProvisioningError
from tests.english import english_in

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


def test_a_lab_made_again_is_found_at_its_new_incarnation_at_once() -> None:
    """Within the view's TTL the listing read before the new instance existed would name
    the old one, on the lost member (a CI run's `class up` after a member's loss)."""
    first, second = instance_name(LAB, "template"), instance_name(LAB, "template", 1)
    view, client = ClusterView(ttl=3600), Client([first])
    assert view.name(client, LAB, "template", new=True) == second
    client.listed.append(Inst(second, "m2"))  # LXD made it; the view has not read it
    view.add(second, "m2")
    assert view.name(client, LAB, "template") == second


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


def test_cluster_errors_are_said_in_the_readers_language() -> None:
    lost = RuntimeError("Failed to begin transaction: no available dqlite leader")
    english = cluster_error("create gl-1", lost)
    assert english is not None and str(english) == (
        "LXD could not create gl-1: the LXD cluster has lost its quorum"
        " (too few database members online)"
    )
    with messages.language("pt-BR"):
        quorum = cluster_error("criar gl-1", lost)
        silent = cluster_error("criar gl-1", RuntimeError("Missing event connection"))
    assert quorum is not None and silent is not None
    assert str(quorum) == (
        "o LXD não conseguiu criar gl-1: o cluster LXD perdeu o quórum"
        " (poucos membros do banco de dados no ar)"
    )
    assert str(silent) == "o LXD não conseguiu criar gl-1: um membro do cluster LXD não responde"
    assert quorum.hint and quorum.hint.startswith("traga membros de volta")
    assert silent.hint and "`--lxd-target MEMBER`" in silent.hint  # the option as typed
    shown = " ".join([str(quorum), quorum.hint, str(silent), silent.hint])
    assert english_in(shown) == []


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


# -- the local LXD keeps main's path --------------------------------------------------------


def connection(*, local: bool, clustered: bool = False, server: str = "") -> Any:
    from orchestrator.backends.lxd.connect import Connection
    from orchestrator.backends.lxd.execution import Tls

    tls = None if local else Tls(context=None)  # type: ignore[arg-type]
    return Connection(object(), "guestlab", "btrfs", tls, clustered, server)


def test_a_local_exec_is_killed_from_the_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No second exec in the machine for the host's own LXD: its process tree is seen here."""
    from orchestrator.backends.contract import ExecResult
    from orchestrator.backends.lxd import machines
    from orchestrator.backends.lxd.host import kill_exec

    kills: list[Any] = []

    class Session:
        def __init__(self, _client: Any, _name: str, _argv: Any, _t: float, kill: Any, _tls: Any):
            kills.append(kill)

        def run(self) -> ExecResult:
            return ExecResult(0, "", "")

    monkeypatch.setattr(machines, "ExecSession", Session)
    inst = Inst("gl-1-web", "")
    machines.execute(connection(local=True), inst, ["true"], 5)  # type: ignore[arg-type]
    machines.execute(connection(local=False), inst, ["true"], 5)  # type: ignore[arg-type]
    assert kills[0] is kill_exec
    assert kills[1] is not kill_exec and kills[1].func is machines.kill_elsewhere


@pytest.mark.parametrize("cluster", [False, True])
def test_cluster_sentences_only_for_a_cluster(cluster: bool) -> None:
    """A busy local database is no lost quorum."""
    from pylxd.exceptions import LXDAPIException

    from orchestrator.backends.lxd.machines import api_errors

    class Response:
        status_code = 500

        def json(self) -> dict[str, str]:
            return {"error": "Failed to begin transaction: database is locked"}

    with pytest.raises(ProvisioningError) as raised, api_errors("create gl-1", cluster=cluster):
        raise LXDAPIException(Response())  # type: ignore[arg-type]
    assert ("quorum" in str(raised.value)) is cluster


def test_a_cluster_has_host_locks_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from orchestrator.backends.lxd import host

    monkeypatch.setattr(paths, "host_locks_dir", lambda: tmp_path)
    with host.create_lock(), host.pool_lock("guestlab"):
        pass
    with host.create_lock("ab12" * 16), host.pool_lock("guestlab", "ab12" * 16):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "guestlab-lxd-create-ab12ab12ab12ab12.lock",
        "guestlab-lxd-create.lock",  # one LXD's, as before the cluster
        "guestlab-lxd-pool-guestlab-ab12ab12ab12ab12.lock",
        "guestlab-lxd-pool-guestlab.lock",
    ]


# -- placing labs ---------------------------------------------------------------------------


class Engine:
    """A backend with the Members capability, a cluster or not."""

    name = "lxd"

    def __init__(self, clustered: bool) -> None:
        self.is_cluster = clustered
        self.placed: list[tuple[str, str | None]] = []

    def clustered(self) -> bool:
        return self.is_cluster

    def place(self, lab: LabRef, member: str | None) -> None:
        self.placed.append((lab.key, member))

    def placement(self, labs: Any) -> dict[str, str]:
        return {ref.key: "glc-2" for ref, _machines in labs}

    def offline_members(self) -> set[str]:
        return {"glc-2"}

    def memory_by_member(self) -> dict[str, int]:
        return {"glc-1": 2 * 1024**3, "glc-2": 1024**3}


def test_a_member_is_named_only_on_a_cluster() -> None:
    from orchestrator.errors import UsageError
    from orchestrator.lab.placement import place

    cluster, single = Engine(True), Engine(False)
    place([cluster], LAB, "glc-3")
    place([single], LAB, None)  # LXD's choice: nothing to refuse
    assert cluster.placed == [(LAB.key, "glc-3")] and single.placed == [(LAB.key, None)]
    with pytest.raises(UsageError) as refused:
        place([single], LAB, "glc-3")
    assert "lxd_target" in str(refused.value) and refused.value.hint
    with pytest.raises(UsageError):
        place([object()], LAB, "glc-3")  # type: ignore[list-item]


def test_where_labs_are_and_which_members_are_offline() -> None:
    from orchestrator.classroom import placement

    engine = Engine(True)
    assert placement.where(engine, [LAB], ["web"]) == {LAB.key: "glc-2 (offline)"}  # type: ignore[arg-type]
    assert placement.where(object(), [LAB], ["web"]) == {}  # type: ignore[arg-type]
    fits = placement.fits_by_member(engine, "the LXD cluster", 512 * 1024**2)  # type: ignore[arg-type]
    assert fits == "the LXD cluster (glc-1 2.0 GiB: 4 lab(s), glc-2 1.0 GiB: 2 lab(s))"


def test_class_status_shows_each_labs_member() -> None:
    from rich.console import Console

    from orchestrator.classroom.store import ClassRecord
    from orchestrator.cli.class_tables import class_table
    from orchestrator.state import LabRecord

    klass = ClassRecord("machine-id-clone", "x.yaml", "lxd", None, None, [], "up", 0.0, 0.0)
    students = [
        {"student": s, "name": s, "email": "", "tasks": {}, "total": 0, "max_total": 0}
        | {"last_check": None, "hints": 0, "error": ""}
        for s in ("ann", "bob")
    ]

    def lab(student: str) -> LabRecord:
        key = f"machine-id-clone--{student}"
        return LabRecord(key, "machine-id-clone", student, "lxd", ["lxd"], "", {}, "up", "", 0, 0)

    where = {"ann": "glc-1", "bob": "glc-2 (offline)"}
    table = class_table(klass, {"students": students}, {s: lab(s) for s in where}, where)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "up on glc-1" in text and "up on glc-2 (offline)" in text


# -- a member that does not answer ----------------------------------------------------------


class Members:
    """pylxd's client as `Sites.running` sees it: the members' states, the instances, and
    a machine whose member fails to answer `silent_for` times before it does."""

    def __init__(self, offline: set[str], silent_for: int) -> None:
        self.offline, self.silent_for = offline, silent_for
        self.instances = self
        self.api = self
        self.cluster = self
        self.members = self

    def all(self, **_: Any) -> list[Inst]:
        return [Inst(instance_name(LAB, "clone"), "glc-1")]

    def get(self, **_: Any) -> Any:
        states = [("glc-1", "Offline" if "glc-1" in self.offline else "Online")]
        body = {"metadata": [{"server_name": n, "status": s} for n, s in states]}
        return type("Response", (), {"json": lambda _self: body})()


def reach(monkeypatch: pytest.MonkeyPatch, client: Members) -> tuple[Any, list[float]]:
    """Sites.running on a cluster, where reaching the instance fails while `silent_for`."""
    from orchestrator.backends.lxd import placing

    slept: list[float] = []
    monkeypatch.setattr(placing.time, "sleep", slept.append)
    clock = iter(range(0, 10_000))  # each look at the clock: one second later
    monkeypatch.setattr(placing.time, "monotonic", lambda: float(next(clock)))

    def running_named(_client: Any, _lab: Any, machine: str, name: str) -> str:
        if client.silent_for:
            client.silent_for -= 1
            raise MemberSilent("LXD could not reach it: an LXD cluster member does not answer")
        return name

    monkeypatch.setattr(placing, "running_named", running_named)
    conn = type("Conn", (), {"clustered": True, "client": client})()
    sites = placing.Sites()
    sites.view = ClusterView(ttl=0)
    return sites.running(conn, LAB, "clone"), slept  # type: ignore[arg-type]


def test_a_member_listed_online_that_fails_to_answer_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # under load, or while the cluster reconnects after losing another member
    found, slept = reach(monkeypatch, Members(set(), silent_for=2))
    assert found == instance_name(LAB, "clone") and slept == [1.0, 2.0]


def test_a_member_that_never_answers_is_unreachable_and_said_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(MemberUnreachable) as silent:
        reach(monkeypatch, Members(set(), silent_for=1000))
    assert silent.value.member == "glc-1" and "does not answer" in str(silent.value)
    with pytest.raises(MemberUnreachable) as offline:  # LXD lists it offline: at once
        reach(monkeypatch, Members({"glc-1"}, silent_for=0))
    assert "which is offline" in str(offline.value)


def test_a_student_pinned_to_a_lost_member_gets_a_lab_elsewhere_and_is_told() -> None:
    from orchestrator.lab.placement import place

    cluster = Engine(True)  # glc-2 is offline
    assert place([cluster], LAB, "glc-3") is None
    note = place([cluster], LAB, "glc-2")
    assert cluster.placed == [(LAB.key, "glc-3"), (LAB.key, None)]
    assert note and "glc-2 is offline" in note


def test_an_instance_a_returning_member_started_again_is_stopped_again_and_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pylxd.exceptions import LXDAPIException

    from orchestrator.backends.lxd import cleanup

    class Refused:
        status_code = 400

        def json(self) -> dict[str, str]:
            return {"error": "Instance is running"}

    class Instance:
        """Started again by its member's LXD once, right after the first stop."""

        def __init__(self) -> None:
            self.status, self.stops, self.deleted, self.snapshots = "Running", 0, False, self

        def sync(self) -> None:
            pass

        def all(self) -> list[Any]:
            return []

        def stop(self, **_: Any) -> None:
            self.stops += 1
            self.status = "Running" if self.stops == 1 else "Stopped"

        def delete(self, **_: Any) -> None:
            if self.status == "Running":
                raise LXDAPIException(Refused())
            self.deleted = True

    monkeypatch.setattr(cleanup.time, "sleep", lambda _s: None)
    inst = Instance()
    cleanup.delete_instance(inst)  # type: ignore[arg-type]
    assert inst.deleted and inst.stops == 2
