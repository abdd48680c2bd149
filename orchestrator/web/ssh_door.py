"""The SSH door: `ssh -p P STUDENT[+MACHINE]@HOST [CMD]` into one's own lab, and nowhere else.

A student logs in with their token as the password, or with the public key of their
roster line (see ssh_auth.py for the user name's grammar). The door gives a root shell,
or runs one command, in a machine of that lab; it refuses everything else an SSH server
can offer: port forwarding (TCP and unix, both ways), agent and X11 forwarding, tunnels,
and every subsystem (SFTP, and SCP over it). A lab holds at most `max_sessions` sessions
at once; a connection gets `auth_tries` tries, an address `failures` in `window` seconds.
Every refusal is logged (user names quoted, never a password or a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from orchestrator import messages, paths
from orchestrator.lab.opening import open_lab
from orchestrator.messages import _
from orchestrator.scenario.i18n import pick_language
from orchestrator.state import Store
from orchestrator.web.access import Seat, attach_argv, machine_names, read_only
from orchestrator.web.in_machine import end_argv
from orchestrator.web.presence import Presence
from orchestrator.web.ssh_auth import (
    Attempts,
    Login,
    host_key,
    parse_username,
    seat_by_token,
    seats_by_key,
    seats_language,
)
from orchestrator.web.ssh_session import DoorSession, Opened

T = TypeVar("T")
log = logging.getLogger("guestlab.ssh")
#: how long the end of a session may take in the machine (a VM answers over ssh)
END_TIMEOUT = 30.0


@dataclass(frozen=True)
class DoorLimits:
    max_sessions: int = 4  # open sessions per lab
    auth_tries: int = 6  # failed logins per connection, as OpenSSH's MaxAuthTries
    failures: int = 20  # failed logins per client address...
    window: float = 300.0  # ...in this many seconds
    login_timeout: float = 60.0


class Door:
    """What every connection of one door shares: the store, presence, limits."""

    def __init__(self, store_path: Path, presence: Presence, limits: DoorLimits) -> None:
        self.store_path = store_path
        self.presence = presence
        self.limits = limits
        #: what the door says before it knows whose lab it is: the serve process's language
        self.lang = pick_language(None)
        self.max_sessions = limits.max_sessions
        self.attempts = Attempts(limits.failures, limits.window)
        self.endings: set[asyncio.Task[None]] = set()

    async def query(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(db, *args) on a read-only connection of its own, in a worker thread."""

        def work() -> T:
            db = read_only(self.store_path)
            try:
                return fn(db, *args)
            finally:
                db.close()

        return await asyncio.to_thread(work)

    async def open(self, seat: Seat, machine: str | None, argv: Sequence[str], tty: bool) -> Opened:
        """The host command attached to argv in the seat's machine (the first by default)."""

        def work() -> Opened:
            store = Store(self.store_path)
            try:
                # the lab's language (chosen at `up`): its errors reach the student in it
                record = store.lab(seat.lab)
                lang = record.lang if record and record.lang else messages.current()
                with messages.language(lang):
                    lab, _record = open_lab(store, seat.scenario, seat.student, lang)
                    name = machine or machine_names(lab)[0]
                    host_argv = attach_argv(lab, name, argv, tty=tty)
            finally:
                store.close()
            return Opened(host_argv, name, lab.backend_for(name), lab.ref)

        return await asyncio.to_thread(work)

    def end_in_machine(self, opened: Opened, marker: str) -> None:
        """End, in the machine, what the session started there; apart from the session,
        which may be cancelled while this runs."""

        def work() -> None:
            result = opened.executor.exec(
                opened.ref, opened.machine, end_argv(marker),
                timeout=END_TIMEOUT,
            )  # fmt: skip
            if not result.ok:
                log.warning(
                    "ssh door could not end a session's processes in %s of %s (exit %d)",
                    opened.machine, opened.ref.key, result.exit_code,
                )  # fmt: skip

        async def guarded() -> None:
            try:
                await asyncio.to_thread(work)
            except Exception as e:  # the machine may be gone: nothing is left to end then
                log.warning(
                    "ssh door could not reach %s of %s: %s", opened.machine, opened.ref.key, e
                )

        task = asyncio.get_running_loop().create_task(guarded())
        self.endings.add(task)
        task.add_done_callback(self.endings.discard)


class DoorServer(asyncssh.SSHServer):
    """One client connection: who it is, and what it may open."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self.conn: asyncssh.SSHServerConnection | None = None
        self.address = "?"
        self.login: Login | None = None
        self.seats: list[Seat] = []
        self.lang = ""  # the language of the labs a login opens, once known
        self.bad_name = ""  # why the user name is not one, in the door's language
        self.failures = 0

    @property
    def who(self) -> str:
        name = self.login.name if self.login else "?"
        return f"{name!r} from {self.address}"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"

    def begin_auth(self, username: str) -> bool:
        if self.named(username) is None:
            self.tell(self.bad_name)  # once, before the client asks for a password
        return True  # every login needs a proof, so a name's existence is never told

    def named(self, username: str) -> Login | None:
        """The login a user name asks for (a client may change names between tries)."""
        try:
            with messages.language(self.door.lang):
                self.login = parse_username(username)
        except ValueError as e:
            self.login = None
            self.bad_name = str(e)
            log.warning("ssh door refused user name %r from %s", username[:100], self.address)
        return self.login

    def tell(self, text: str) -> None:
        """A sentence the client shows while it logs in (an SSH authentication banner), in
        the door's language: whose lab it is, nothing says yet."""
        if self.conn is not None:
            with contextlib.suppress(OSError):  # authentication is over: too late to say
                self.conn.send_auth_banner(f"guestlab: {text}\r\n", self.door.lang)

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        login = self.named(username)
        if login is None or not self.may_try():
            return False
        seat = await self.door.query(seat_by_token, login.name, password)
        return await self.admitted([seat] if seat else [], "token")

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        login = self.named(username)
        if login is None or not self.may_try():
            return False
        seats = await self.door.query(seats_by_key, login.name, key)
        return await self.admitted(seats, "key")

    def may_try(self) -> bool:
        if self.door.attempts.blocked(self.address):
            log.warning("ssh door refused a login of %s: too many failures", self.who)
            with messages.language(self.door.lang):
                self.tell(_("too many failed logins from this address: try again in a while"))
            self.close()
            return False
        return True

    async def admitted(self, seats: list[Seat], proof: str) -> bool:
        """`judged`, with the language of the labs the proof opens learned first."""
        if seats:
            self.lang = await self.door.query(seats_language, seats)
        return self.judged(seats, proof)

    def judged(self, seats: list[Seat], proof: str) -> bool:
        if seats:
            self.seats = seats
            log.info("ssh door: %s logged in with a %s", self.who, proof)
            return True
        self.failures += 1
        self.door.attempts.failed(self.address)
        log.warning("ssh door refused a %s login of %s", proof, self.who)
        with messages.language(self.door.lang):
            if proof == "token":  # a client tries each of its keys: those are not told
                name = self.login.name if self.login else "?"
                self.tell(
                    _(
                        "no lab of {name} opens with this password (it is the token of your"
                        " personal link)"
                    ).format(name=name)
                )
            if self.failures >= self.door.limits.auth_tries:
                log.warning("ssh door closed the connection of %s: too many tries", self.who)
                self.tell(_("too many failed logins: the connection is closed"))
                self.close()
        return False

    def close(self) -> None:
        if self.conn is not None:
            asyncio.get_running_loop().call_soon(self.conn.close)

    def session_requested(self) -> DoorSession | bool:
        if not self.seats or self.login is None:
            return False
        lang = self.lang or self.door.lang
        return DoorSession(self.door, self.seats, self.login, self.who, lang)

    # -- everything else an SSH server could offer, refused and logged --------------------------
    def refused(self, what: str) -> bool:
        log.warning("ssh door refused %s to %s", what, self.who)
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        return self.refused(f"TCP forwarding to {dest_host[:100]!r}:{dest_port}")

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return self.refused(f"remote TCP forwarding from port {listen_port}")

    def unix_connection_requested(self, dest_path: str) -> bool:
        return self.refused(f"unix socket forwarding to {dest_path[:100]!r}")

    def unix_server_requested(self, listen_path: str) -> bool:
        return self.refused("remote unix socket forwarding")

    def tun_requested(self, unit: int | None) -> bool:
        return self.refused("a tunnel device")

    def tap_requested(self, unit: int | None) -> bool:
        return self.refused("a tap device")


class _Refusals(logging.Handler):
    """Passes on asyncssh's own refusals (agent and X11 forwarding, which asyncssh refuses
    before the door hears of them) and its warnings, as the door's log lines."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING or "denied" in text:
            log.warning("ssh door (asyncssh): %s", text[:300])


def log_refusals() -> None:
    """Route asyncssh's log through the door's, once: refusals and warnings only."""
    pkg = logging.getLogger("asyncssh")
    if not any(isinstance(h, _Refusals) for h in pkg.handlers):
        pkg.addHandler(_Refusals())
        pkg.setLevel(logging.INFO)
        pkg.propagate = False  # its other INFO lines (every packet's kind) stay out


async def start_ssh_door(
    host: str,
    port: int,
    store_path: Path,
    presence: Presence,
    *,
    limits: DoorLimits | None = None,
) -> OpenDoor:
    """Listen on host:port; the door lives until `close` of what is returned."""
    limits = limits or DoorLimits()
    key = await asyncio.to_thread(host_key, paths.home())
    door = Door(store_path, presence, limits)
    log_refusals()
    acceptor = await asyncssh.listen(
        host,
        port,
        server_factory=lambda: DoorServer(door),
        server_host_keys=[key],
        encoding=None,  # bytes: what a machine prints is passed on as it is
        line_editor=False,  # keystrokes go to the machine's terminal, which echoes them
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        kbdint_auth=False,
        host_based_auth=False,
        gss_host=None,
        login_timeout=limits.login_timeout,
        keepalive_interval=30,
        keepalive_count_max=4,
    )
    return OpenDoor(acceptor, door)


class OpenDoor:
    """A listening door: its port, and a close that lets sessions' endings finish."""

    def __init__(self, acceptor: asyncssh.SSHAcceptor, door: Door) -> None:
        self.acceptor, self.door = acceptor, door

    def get_port(self) -> int:
        return int(self.acceptor.get_port())

    async def close(self) -> None:
        """Stop listening, then wait (at most END_TIMEOUT) for what ended sessions still
        end in their machines: stopped with the loop, they would leave processes there."""
        self.acceptor.close()
        await self.acceptor.wait_closed()
        pending = list(self.door.endings)
        if pending:
            await asyncio.wait(pending, timeout=END_TIMEOUT)
