"""Small frictions of a student's session (issue 16), on an in-memory engine: the commands
`up` suggests, "did you mean", ids never cut at 80 columns, no stale score after a new up,
and `exec` through the machine's own shell."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator import backends, messages
from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.cli import cli, console
from orchestrator.cli.attached import IN_MACHINE_SHELL
from tests.unit.classroom_fakes import FakeBackend

LAB = "machine-id-clone"


class RecordingBackend(FakeBackend):
    """Records what `exec` ran; a command the machine lacks fails as its shell says."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[list[str]] = []

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        self.ran.append(list(argv))
        if list(argv[:4]) == list(IN_MACHINE_SHELL) and argv[4:5] == ["nosuch"]:
            return ExecResult(127, "", "sh: 1: exec: nosuch: not found\n")
        return super().exec(lab, machine, argv, timeout=timeout)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingBackend]:
    backend = RecordingBackend()
    monkeypatch.setitem(backends._cache, "docker", backend)
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GUESTLAB_STUDENT", "me")
    monkeypatch.delenv("GUESTLAB_LANG", raising=False)
    # rich fixes a console's width when it is made if $COLUMNS is set then: `guestlab()`
    # sets it per command, and this puts the made one back afterwards
    monkeypatch.setattr(console.out, "_width", console.out._width)
    yield backend
    messages.use(messages.ENGLISH)


def guestlab(*args: str, columns: int = 120) -> Result:
    console.out.width = columns
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(columns)})


def test_up_suggests_commands_with_the_student_when_not_the_default(
    engine: RecordingBackend,
) -> None:
    other = guestlab("up", LAB, "--student", "ana", columns=200).output
    own = guestlab("up", LAB).output
    suggested = other.splitlines()[-3:] + [ln for ln in other.splitlines() if "hint(s):" in ln]
    assert len(suggested) == 6, other
    assert all(ln.strip(" │").endswith("--student ana") for ln in suggested), suggested
    assert "--student" not in own


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (("up", "machine-id-clnoe"), "did you mean machine-id-clone?"),
        (("exec", LAB, "clnoe", "--", "true"), "did you mean clone?"),
        (("check", LAB, "--task", "unique-di"), "did you mean unique-id?"),
        (("hint", LAB, "find-di"), "did you mean find-id?"),
    ],
)
def test_an_unknown_name_gets_the_closest_known_one(
    engine: RecordingBackend, args: tuple[str, ...], suggestion: str
) -> None:
    assert guestlab("up", LAB).exit_code == 0
    res = guestlab(*args)
    assert res.exit_code != 0
    assert suggestion == res.exception.hint, res.exception  # type: ignore[union-attr]


def test_nothing_close_lists_what_there_is(engine: RecordingBackend) -> None:
    assert guestlab("up", LAB).exit_code == 0
    res = guestlab("exec", LAB, "zzz", "--", "true")
    assert res.exception.hint == "its machines: template, clone"  # type: ignore[union-attr]


def test_exec_runs_through_the_machines_shell_and_gives_its_error(
    engine: RecordingBackend,
) -> None:
    assert guestlab("up", LAB).exit_code == 0
    res = guestlab("exec", LAB, "clone", "--", "nosuch", "arg")
    assert res.exit_code == 127
    assert engine.ran[-1] == [*IN_MACHINE_SHELL, "nosuch", "arg"]
    assert "nosuch: not found" in res.stderr and "OCI" not in res.stderr


def test_list_and_status_never_cut_an_id_at_80_columns(engine: RecordingBackend) -> None:
    student = "a-student-with-a-long-name"
    assert guestlab("up", "ssh-host-keys-clone", "--student", student).exit_code == 0
    listing = guestlab("list", columns=80).output
    status = guestlab("status", columns=80).output
    assert max(len(ln) for ln in (listing + status).splitlines()) <= 80
    ids = ["machine-id-clone", "ssh-host-keys-clone", "lxd-first-container", "cloud-init-user-data"]
    for sid in ids:
        assert re.search(rf"│ {sid} +│", listing), sid
    assert re.search(rf"│ ssh-host-keys-clone +│ {student} +│", status), status


def test_status_after_down_and_a_new_up_shows_no_old_score(engine: RecordingBackend) -> None:
    assert guestlab("up", LAB).exit_code == 0
    assert guestlab("check", LAB, "--no-reboot").exit_code == 1
    assert "0/5 at" in " ".join(guestlab("status").output.split())
    assert guestlab("down", LAB).exit_code == 0
    assert guestlab("up", LAB).exit_code == 0
    shown = guestlab("status").output
    assert "0/5" not in shown and "│ -" in shown, shown
