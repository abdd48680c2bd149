"""Mechanics every backend shares, written once: wait for boot, connect or raise with the
fix, refuse what exists, build once under a lock, and engine errors turned into ours.

An engine supplies only what is its own (how to ask a machine its state, how to connect,
what "present" means); the policy (timeouts, what each systemd state means, the
sentences users read) lives here, so the engines cannot drift apart again.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

from orchestrator import paths
from orchestrator.backends.contract import Availability, LabRef
from orchestrator.errors import (
    BackendUnavailable,
    GuestlabError,
    MachineUnavailable,
    ProvisioningError,
)
from orchestrator.messages import _

T = TypeVar("T")
ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]

# -- wait for boot ---------------------------------------------------------------------


def _seconds(variable: str, default: float) -> float:
    """$VARIABLE as seconds (a number above 0, at most a day), else `default`."""
    try:
        value = float(os.environ.get(variable, ""))
    except ValueError:
        return default
    return value if 0 < value <= 86400 else default


#: from start to systemd settled in a container: a catalog image boots in 2-5 s alone,
#: and a whole class starting at once on one host has been seen to take ten times that;
#: $GUESTLAB_CONTAINER_BOOT_TIMEOUT (seconds) sets it for a slower or a quicker host
CONTAINER_BOOT_TIMEOUT = _seconds("GUESTLAB_CONTAINER_BOOT_TIMEOUT", 90.0)
#: a VM's cold boot under software emulation (no KVM) takes about a minute alone; with
#: the host's two cores busy (the suite's five lanes) reboots were seen past 300 s in CI;
#: $GUESTLAB_VM_BOOT_TIMEOUT (seconds) sets it
VM_BOOT_TIMEOUT = _seconds("GUESTLAB_VM_BOOT_TIMEOUT", 600.0)
#: between two questions to a machine that is not ready yet. `systemctl
#: is-system-running --wait` blocks by itself once systemd's bus is up, so this only
#: paces the quick failures before that (no bus yet, exec refused early in boot)
POLL_INTERVAL = 0.1
#: the longest one question may take; a probe that hangs must not eat the whole deadline
PROBE_TIMEOUT = 10.0


class Verdict(Enum):
    WAIT = "wait"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Reading:
    """What one answer of `systemctl is-system-running` means for a boot."""

    verdict: Verdict
    why: str = ""


#: states that will not turn into `running` without someone acting
_FAILED = {
    "maintenance": "systemd gave up and is in maintenance mode (an emergency or rescue "
    "shell): it will not finish booting by itself",
    "stopping": "the machine is shutting down",
}


def read_state(answer: str) -> Reading:
    """Read a systemd state: keep waiting, ready, or failed with a sentence.

    `running` and `degraded` are ready: boot is over, a failed unit is the scenario's
    business (a check can look at it). `offline` means keep waiting: systemctl prints it
    when it cannot reach PID 1 as a systemd manager (`/run/systemd/system` not made
    yet), which early in a container's boot is what we are waiting for; a machine that
    is really gone is reported by the probe (MachineUnavailable), not by this word.
    `initializing`, `starting`, `unknown` and anything else (no bus yet, an engine's
    error text) also mean keep waiting; the deadline ends a wait that never settles.
    """
    state = answer.strip()
    if state in ("running", "degraded"):
        return Reading(Verdict.READY, f"systemd is {state}")
    if state in _FAILED:
        return Reading(Verdict.FAILED, _FAILED[state])
    return Reading(Verdict.WAIT, f"systemd is {state}" if state else "no answer yet")


Probe = Callable[[float], str]
"""Asks a machine its systemd state once, given the seconds it may take; returns what it said,
or why it could not ask (read as "keep waiting"). Raises MachineUnavailable when the
machine is gone, which ends the wait; any other GuestlabError passes through."""

AnswerProbe = Callable[[float], str | None]
"""Runs one command in a machine, given the seconds it may take: None when it answered, else
why not (read as "keep waiting")."""


def wait_for_systemd(
    what: str,
    probe: Probe,
    *,
    timeout: float = CONTAINER_BOOT_TIMEOUT,
    hint: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Ask `probe` until systemd in `what` (e.g. "machine `db` of lab `x`") is ready;
    return the state. ProvisioningError on a failed state or at the deadline."""

    def ask(left: float) -> tuple[Reading, str]:
        answer = probe(left).strip()
        return read_state(answer), answer

    return _poll(what, ask, timeout, hint, clock, sleep)


def wait_for_answer(
    what: str,
    probe: AnswerProbe,
    *,
    timeout: float = CONTAINER_BOOT_TIMEOUT,
    hint: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """For `init: none`: wait only until a command answers in `what`."""

    def ask(left: float) -> tuple[Reading, str]:
        why = probe(left)
        if why is None:
            return Reading(Verdict.READY), "answering"
        return Reading(Verdict.WAIT, why), why.strip() or "no answer"

    _poll(what, ask, timeout, hint, clock, sleep)


def _poll(
    what: str,
    ask: Callable[[float], tuple[Reading, str]],
    timeout: float,
    hint: str | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str:
    deadline = clock() + timeout
    last = "no answer"
    while True:  # ask at least once: a machine ready at the deadline is ready
        left = max(deadline - clock(), 0.0)
        try:
            reading, said = ask(min(max(left, 1.0), PROBE_TIMEOUT))
        except MachineUnavailable as exc:
            raise MachineUnavailable(
                _("{what} stopped while booting (last state: {last}): {error}").format(
                    what=what, last=last, error=exc
                ),
                hint=hint,
            ) from None
        last = said[:200] or last
        if reading.verdict is Verdict.READY:
            return last
        if reading.verdict is Verdict.FAILED:
            raise ProvisioningError(
                _("{what} did not boot (state: {last}): {why}").format(
                    what=what, last=last, why=reading.why
                ),
                hint=hint,
            )
        if clock() + POLL_INTERVAL > deadline:
            raise ProvisioningError(
                _("{what} did not finish booting in {timeout} s (last state: {last})").format(
                    what=what, timeout=format(timeout, "g"), last=last
                ),
                hint=hint,
            )
        sleep(POLL_INTERVAL)


# -- connect or raise ------------------------------------------------------------------


def short(exc: BaseException) -> str:
    """The first line of an engine's exception, bounded: engines put pages in them."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def raise_unless_usable(engine: str, state: Availability) -> None:
    """BackendUnavailable, with the fix, when `state` says the engine cannot be used."""
    if not state.usable:
        raise BackendUnavailable(f"{engine}: {state.detail}", hint=state.fix or None)


def connect_or_raise(engine: str, connect: Callable[[], T], errors: ErrorTypes, fix: str) -> T:
    """`connect()`'s result, or BackendUnavailable naming `engine` with `fix` when it
    raises one of the engine's `errors`."""
    try:
        return connect()
    except errors as exc:
        raise BackendUnavailable(
            _("cannot reach {engine} ({error})").format(engine=engine, error=short(exc)), hint=fix
        ) from None


class Connector(Generic[T]):
    """An engine connection opened once, by the first thread that needs it.

    `open_` says whether the engine can be used (never raising) and hands the
    connection when it can; `get()` turns "cannot" into BackendUnavailable with the fix.
    """

    def __init__(self, engine: str, open_: Callable[[], tuple[Availability, T | None]]) -> None:
        self._engine = engine
        self._open = open_
        self._conn: T | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> T | None:
        """The connection, if one was opened; never connects."""
        return self._conn

    def check(self) -> Availability:
        """Ask the engine again; keep the first connection that worked."""
        state, conn = self._open()
        if conn is not None and self._conn is None:
            self._conn = conn  # other threads may be using the current one: keep it
        return state

    def get(self) -> T:
        with self._lock:
            if self._conn is None:
                state = self.check()
                raise_unless_usable(self._engine, state)
                if self._conn is None:  # usable, yet no connection handed: say so
                    raise BackendUnavailable(f"{self._engine}: {state.detail}")
            return self._conn


# -- refuse what exists ----------------------------------------------------------------


def refuse_existing(lab: LabRef, machine: str, *, exists: bool, where: str = "") -> None:
    """ProvisioningError when the machine already exists (`where`: the engine's name of
    it): guestlab never adopts or overwrites a machine it did not just make."""
    if exists:
        detail = f" ({where})" if where else ""
        raise ProvisioningError(
            _("machine `{machine}` of lab `{key}` already exists{detail}").format(
                machine=machine, key=lab.key, detail=detail
            ),
            hint=_("remove the lab first: guestlab down"),
        )


# -- build once under a lock -----------------------------------------------------------


def lock_path(name: str, directory: Path | None = None) -> Path:
    """The lock file `name` in `directory`, else in the state store's locks directory.

    A lock must be shared by everyone who shares what it guards: a built image cached in
    $GUESTLAB_IMAGES is locked there, not in one state store's directory.
    """
    return (directory or paths.locks_dir()) / f"{name}.lock"


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an flock on `path` (made if missing); the kernel drops it when a process
    dies, so `kill -9` never leaves a stale lock."""
    # the directory may be shared (/run/lock): never follow a link someone else left
    # there, and never truncate (another process may hold the same file)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_once(lock: Path, present: Callable[[], bool], build: Callable[[], None]) -> bool:
    """Run `build` unless `present()`; whether it built.

    A concurrent build of the same thing holds `lock`: this waits for it, then asks
    `present()` again and builds only if still missing. `present()` must be true only
    for a finished product (write it aside, then rename it into place), because it is
    also asked without the lock so that a built product costs no lock at all.
    """
    if present():
        return False
    with file_lock(lock):
        if present():
            return False
        build()
    return True


# -- translate engine errors -----------------------------------------------------------


def engine_error(
    exc: BaseException,
    doing: str,
    *,
    kind: type[GuestlabError] = ProvisioningError,
    hint: str | None = None,
) -> GuestlabError:
    """Our error for an engine's exception, as one sentence: `<doing> failed: <why>`."""
    return kind(_("{doing} failed: {error}").format(doing=doing, error=short(exc)), hint=hint)


@contextmanager
def engine_errors(
    doing: str,
    errors: ErrorTypes,
    *,
    kind: type[GuestlabError] = ProvisioningError,
    hint: str | None = None,
) -> Iterator[None]:
    """Turn the engine's `errors` raised inside into `engine_error(...)`; our own errors
    pass through untouched (they already say what went wrong)."""
    try:
        yield
    except GuestlabError:
        raise
    except errors as exc:
        raise engine_error(exc, doing, kind=kind, hint=hint) from None


#: writes stdin to $1 with mode $2, owned by root, beside the target then renamed (a reader
#: never sees half a file); run in a machine as `sh -c PUT_SCRIPT sh DEST MODE`
PUT_SCRIPT = r"""
set -eu
dest=$1 mode=$2
[ -d "$dest" ] && { echo "$dest is a directory" >&2; exit 1; }
mkdir -p -- "$(dirname -- "$dest")"
tmp=$(mktemp -- "$dest.guestlab.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chown 0:0 -- "$tmp"
chmod "$mode" -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
"""
