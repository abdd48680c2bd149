"""The SSH door with the stock OpenSSH client, into labs on every backend.

The door runs in this process on an event loop of its own, as `guestlab serve` runs it;
labs come up through the CLI; the client pins the door's host key (StrictHostKeyChecking).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import backends, paths
from orchestrator.backends.contract import LabRef
from orchestrator.credentials import Seats
from orchestrator.state import Store
from orchestrator.web.presence import Presence
from orchestrator.web.ssh_auth import host_key
from orchestrator.web.ssh_door import start_ssh_door
from tests.integration.conftest import engine, guestlab, student_id

SCENARIO = "machine-id-clone"


class DoorThread:
    """A door on an event loop in a thread of its own."""

    def __init__(self, known_hosts: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.presence = Presence()
        store = paths.home() / "state.db"
        self.opened = self.call(start_ssh_door("127.0.0.1", 0, store, self.presence))
        self.port = self.opened.get_port()
        key = host_key(paths.home()).export_public_key().decode().strip()
        with known_hosts.open("a") as f:
            f.write(f"[127.0.0.1]:{self.port} {key}\n")
        self.known_hosts = known_hosts

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.call(self.opened.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def ssh_argv(self, user: str, *options: str, program: str = "ssh") -> list[str]:
        port = ["-P" if program == "sftp" else "-p", str(self.port)]
        return [
            program, *port,
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=20", *options, f"{user}@127.0.0.1",
        ]  # fmt: skip


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoorThread]:
    d = DoorThread(tmp_path_factory.mktemp("door") / "known_hosts")
    yield d
    d.stop()


def by_token(token: str) -> tuple[list[str], dict[str, str]]:
    """sshpass before ssh, the token in its environment (never on a command line)."""
    options = ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
    options += ["-o", "NumberOfPasswordPrompts=1"]  # a refusal ends ssh, with 255
    return ["sshpass", "-e", *options], {**os.environ, "SSHPASS": token}


def ssh(
    door: DoorThread,
    user: str,
    token: str,
    *args: str,
    options: tuple[str, ...] = (),
    stdin: str = "",
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    pre, env = by_token(token)
    argv = [pre[0], pre[1], *door.ssh_argv(user, *pre[2:], *options), *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, env=env
    )


@dataclass(frozen=True)
class UpLab:
    engine: str
    student: str
    token: str

    @property
    def key(self) -> str:
        return LabRef(SCENARIO, self.student).key

    def processes(self, machine: str) -> str:
        ref = LabRef(SCENARIO, self.student)
        return (
            backends.get(self.engine).exec(ref, machine, ["ps", "-eo", "args"], timeout=30).stdout
        )


@pytest.fixture(scope="module")
def labs() -> Iterator[Callable[[str, str], UpLab]]:
    """Labs of SCENARIO brought up once per (engine, role) in this module, all down after."""
    made: dict[tuple[str, str], UpLab] = {}
    broken: dict[tuple[str, str], str] = {}  # a lab that did not come up fails each test

    def get(name: str, role: str = "first") -> UpLab:
        engine(name)
        if (name, role) in broken:
            pytest.fail(broken[(name, role)])
        if (name, role) not in made:
            student = student_id()
            made[(name, role)] = UpLab(name, student, "")  # down at the end, even if up fails
            up = guestlab("up", SCENARIO, "--student", student, "--backend", name)
            if up.returncode != 0:
                broken[(name, role)] = f"the lab did not come up: {up.stdout}{up.stderr}"
                pytest.fail(broken[(name, role)])
            store = Store()
            token = Seats(store.db).issue(LabRef(SCENARIO, student).key)
            store.close()
            made[(name, role)] = UpLab(name, student, token)
        return made[(name, role)]

    yield get
    for lab in made.values():
        down = guestlab("down", SCENARIO, "--student", lab.student)
        assert down.returncode == 0, down.stdout + down.stderr


ENGINES = [
    pytest.param(e, marks=getattr(pytest.mark, e), id=e) for e in ("docker", "lxd", "nspawn")
]


@pytest.mark.parametrize("name", ENGINES)
def test_a_command_and_a_shell_reach_the_labs_machines(
    door: DoorThread, labs: Callable[[str], UpLab], name: str
) -> None:
    lab = labs(name)
    first = ssh(door, lab.student, lab.token, "hostname")
    assert (first.returncode, first.stdout) == (0, "template\n"), first.stderr
    named = ssh(door, f"{lab.student}+clone", lab.token, "hostname; echo oops >&2; exit 7")
    assert (named.returncode, named.stdout, named.stderr) == (7, "clone\n", "oops\n")
    # a terminal: the command line is echoed in lower case, its answer is upper case
    shell = ssh(
        door, f"{lab.student}+clone", lab.token, options=("-tt",),
        stdin='test -t 0; echo "terminal=$?"\nhostname | tr a-z A-Z\nexit 3\n',
    )  # fmt: skip
    assert shell.returncode == 3, shell.stdout + shell.stderr
    assert "CLONE" in shell.stdout and "terminal=0" in shell.stdout, shell.stdout


def wait_for(what: Callable[[], bool], limit: float = 30) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "command"])
@pytest.mark.parametrize("name", ENGINES)
def test_closing_the_connection_ends_the_process_in_the_machine(
    door: DoorThread, labs: Callable[[str], UpLab], name: str, tty: bool
) -> None:
    lab = labs(name)
    sleeper = "sleep 4242" if tty else "sleep 4243"
    pre, env = by_token(lab.token)
    argv = [*pre[:2], *door.ssh_argv(lab.student, *pre[2:], *(["-tt"] if tty else []))]
    client = subprocess.Popen(
        [*argv, *([] if tty else [sleeper])], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        if tty:
            assert client.stdin is not None
            client.stdin.write(f"{sleeper}\n".encode())
            client.stdin.flush()
        assert wait_for(lambda: sleeper in lab.processes("template")), sleeper
        assert door.presence.count(lab.key, "ssh") == 1
    finally:
        os.killpg(client.pid, signal.SIGKILL)  # the client dies: no goodbye is sent
        client.wait()
    assert wait_for(lambda: sleeper not in lab.processes("template")), f"{sleeper} stayed"
    assert wait_for(lambda: door.presence.count(lab.key, "ssh") == 0)


@pytest.mark.docker
def test_a_token_opens_its_own_lab_and_nothing_else(
    door: DoorThread, labs: Callable[[str, str], UpLab]
) -> None:
    ann, bob = labs("docker", "first"), labs("docker", "second")
    assert ssh(door, bob.student, bob.token, "hostname").stdout == "template\n"
    for user, token in [
        (ann.student, bob.token),  # another student's token
        (f"{ann.student}+clone", bob.token),
        (ann.key, bob.token),
        (ann.student, ann.token[:-1] + ("A" if ann.token[-1] != "A" else "B")),  # wrong
        ("not a name", ann.token),
    ]:
        refused = ssh(door, user, token, "hostname")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, user
        assert refused.stdout == ""
    lacking = ssh(door, f"{ann.student}+nope", ann.token, "hostname")
    assert lacking.returncode == 1 and lacking.stdout == ""
    assert "this lab has no machine nope" in lacking.stderr and "clone" in lacking.stderr
    # the lab key is a user name too
    assert ssh(door, f"{ann.key}+clone", ann.token, "hostname").stdout == "clone\n"


@pytest.mark.docker
def test_forwarding_agents_and_sftp_are_refused_and_logged(
    door: DoorThread,
    labs: Callable[[str], UpLab],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lab = labs("docker")
    caplog.set_level(logging.INFO)
    remote = ssh(
        door, lab.student, lab.token, "true",
        options=("-R", "127.0.0.1:0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes"),
    )  # fmt: skip
    assert remote.returncode == 255 and "forwarding failed" in remote.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local_port = s.getsockname()[1]
    pre, env = by_token(lab.token)
    forward = f"127.0.0.1:{local_port}:127.0.0.1:{door.port}"
    argv = [*pre[:2], *door.ssh_argv(lab.student, *pre[2:], "-L", forward), "sleep 20"]
    client = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: door.presence.count(lab.key, "ssh") == 1)
        with socket.create_connection(("127.0.0.1", local_port), timeout=10) as conn:
            conn.settimeout(10)
            assert conn.recv(100) == b""  # the door's own banner would come through
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait()
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(agent_sock.exists, 10)
        pre, env = by_token(lab.token)
        env["SSH_AUTH_SOCK"], env["DISPLAY"] = str(agent_sock), ":77"
        argv = [
            *pre[:2],
            *door.ssh_argv(lab.student, *pre[2:], "-A", "-X"),
            'echo "[$SSH_AUTH_SOCK][$DISPLAY]"',
        ]
        answer = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert answer.stdout == "[][]\n", answer.stderr
    finally:
        agent.kill()
        agent.wait()
    sftp = subprocess.run(
        [
            *pre[:2],
            *door.ssh_argv(lab.student, *pre[2:], program="sftp"),
        ],
        input="ls /\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSHPASS": lab.token},
    )
    assert sftp.returncode != 0 and "subsystem request failed" in sftp.stderr
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "guestlab.ssh")
    for refusal in (
        "remote TCP forwarding",
        "TCP forwarding to '127.0.0.1'",
        "Agent forwarding request denied",
        "X11 forwarding request denied",
        "subsystem 'sftp'",
    ):
        assert refusal in logged, refusal
    assert lab.token not in logged and lab.token not in caplog.text


@pytest.mark.docker
def test_a_lab_holds_a_bounded_number_of_sessions(
    door: DoorThread, labs: Callable[[str], UpLab]
) -> None:
    lab = labs("docker")
    pre, env = by_token(lab.token)
    argv = [*pre[:2], *door.ssh_argv(lab.student, *pre[2:]), "sleep 60"]
    held = [
        subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(4)
    ]
    try:
        assert wait_for(lambda: door.presence.count(lab.key, "ssh") == 4)
        fifth = ssh(door, lab.student, lab.token, "hostname")
        assert fifth.returncode == 1 and "at most 4 SSH sessions" in fifth.stderr
    finally:
        for p in held:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert wait_for(lambda: door.presence.count(lab.key, "ssh") == 0)
    assert ssh(door, lab.student, lab.token, "hostname").returncode == 0


@pytest.mark.docker
def test_the_host_key_outlives_a_restart_of_the_door(
    door: DoorThread, labs: Callable[[str], UpLab], tmp_path: Path
) -> None:
    lab = labs("docker")
    again = DoorThread(door.known_hosts)  # pinned with the key of the file, found again
    try:
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(again.port), "-t", "ed25519", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        first = subprocess.run(
            ["ssh-keyscan", "-p", str(door.port), "-t", "ed25519", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert scan.stdout.split()[-1] == first.stdout.split()[-1]
        assert ssh(again, lab.student, lab.token, "hostname").stdout == "template\n"
    finally:
        again.stop()


@pytest.mark.docker
def test_a_public_key_from_the_roster_opens_its_students_lab(
    door: DoorThread, tmp_path: Path
) -> None:
    engine("docker")
    klass, student = "machine-id-inspect", student_id()
    for name in ("mine", "other"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
            check=True,
        )
    public = (tmp_path / "mine.pub").read_text().strip()
    roster = tmp_path / "class.csv"
    roster.write_text(f"id,name,email,ssh_key\n{student},Ann,,{public}\n")
    try:
        up = guestlab("class", "up", klass, "--roster", str(roster), "--backend", "docker")
        assert up.returncode == 0, up.stdout + up.stderr

        def with_key(name: str) -> subprocess.CompletedProcess[str]:
            options = ("-i", str(tmp_path / name), "-o", "IdentitiesOnly=yes",
                       "-o", "PasswordAuthentication=no", "-o", "BatchMode=yes")  # fmt: skip
            argv = [*door.ssh_argv(student, *options), "hostname"]
            env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
            return subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)

        mine = with_key("mine")
        assert (mine.returncode, mine.stdout) == (0, "guest\n"), mine.stderr
        other = with_key("other")
        assert other.returncode == 255 and "Permission denied" in other.stderr
    finally:
        down = guestlab("class", "down", klass)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.vagrant
def test_a_virtual_machine_is_reached_through_the_door(
    door: DoorThread, vm_seat: tuple[str, str]
) -> None:
    student, token = vm_seat
    command = ssh(door, student, token, "hostname; exit 4")
    assert (command.returncode, command.stdout) == (4, "guest\n"), command.stderr
    shell = ssh(
        door, f"{student}+guest", token, options=("-tt",),
        stdin="hostname | tr a-z A-Z\nexit 5\n",
    )  # fmt: skip
    assert shell.returncode == 5 and "GUEST" in shell.stdout, shell.stdout + shell.stderr
