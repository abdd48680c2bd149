"""The contract every backend fulfils, and the plain objects it is handed.

A backend knows nothing of scenarios, checks or the state store: it gets `MachineSpec`s and
commands, and finds its resources again through the labels it puts on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator import paths

if TYPE_CHECKING:
    from orchestrator.images.manifest import Manifest

DEFAULT_MEMORY = 512 * 1024**2
DEFAULT_CPUS = 1.0
DEFAULT_PIDS = 1024
#: what one machine may write to its disk, beyond its image
DEFAULT_DISK = 2 * 1024**3

#: every resource a backend creates carries these labels (or the engine's equivalent)
LABEL_LAB = "guestlab.lab"
LABEL_MACHINE = "guestlab.machine"
LABEL_STUDENT = "guestlab.student"
LABEL_SCENARIO = "guestlab.scenario"
#: which state store made the resource: `gc` collects only its own store's leftovers
LABEL_STORE = "guestlab.store"

Progress = Callable[[str], None]
"""Receives one short line about long work (an image build, a boot)."""


def no_progress(_line: str) -> None:
    """A Progress that says nothing."""


#: blocks until systemd has finished booting, once its bus is up (systemd 240 and later);
#: before that it fails at once, so callers poll it briefly
SYSTEMD_READY = ("systemctl", "is-system-running", "--wait")


def default_student() -> str:
    """Whose lab a command means when --student is not given."""
    import getpass  # here: it loads termios and pwd, which most commands never need

    return os.environ.get("GUESTLAB_STUDENT") or getpass.getuser()


@dataclass(frozen=True)
class LabRef:
    """Identifies one lab: a scenario brought up for one student.

    `slot` names a lab made ahead of its student (a pool's): its resources keep the name
    and labels they were made with, so a claimed lab's key is the slot's, not the student's.
    """

    scenario: str
    student: str
    slot: str = ""

    @property
    def key(self) -> str:
        """Engine-safe unique name of the lab, used in resource names and labels."""
        return f"{self.scenario}--{self.slot}" if self.slot else self.owner

    @property
    def owner(self) -> str:
        """The key the student's lab has when made for them: how the state store finds it."""
        return f"{self.scenario}--{_safe(self.student)}"

    def labels(self, machine: str | None = None) -> dict[str, str]:
        out = {
            LABEL_LAB: self.key,
            LABEL_SCENARIO: self.scenario,
            LABEL_STUDENT: self.student,
            LABEL_STORE: paths.store_id(),
        }
        if machine is not None:
            out[LABEL_MACHINE] = machine
        return out


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return cleaned or "anonymous"


@dataclass(frozen=True)
class MachineSpec:
    """What a backend needs to create one machine."""

    lab: LabRef
    name: str
    image: str  # logical image from the catalog, e.g. debian-12-systemd
    init: str = "systemd"  # systemd | none
    hostname: str | None = None
    memory: int = DEFAULT_MEMORY  # bytes
    cpus: float = DEFAULT_CPUS
    pids: int = DEFAULT_PIDS
    disk: int = DEFAULT_DISK  # bytes
    #: sizes in bytes of extra empty block devices (a VM's vdb, vdc, ...)
    disks: tuple[int, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return self.lab.labels(self.name)


#: the most guestlab keeps of one stream of one command run in a machine; a command that
#: prints more is stopped there (what a machine prints is untrusted and may never end)
OUTPUT_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command run in a machine."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    #: the command printed more than OUTPUT_LIMIT on a stream and was stopped
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Availability:
    """Whether a backend can be used here, and if not the one sentence that says why."""

    usable: bool
    detail: str  # version or reason
    fix: str = ""  # how to make it usable


@dataclass
class FoundResources:
    """What a backend found of one lab (or of every lab) by its labels."""

    machines: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # networks, images, snapshots...

    def __bool__(self) -> bool:
        return bool(self.machines or self.other)


class Executor(Protocol):
    """Anything that runs a command in a lab's machine: a backend, or a lab routing to several."""

    def exec(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float
    ) -> ExecResult: ...


@runtime_checkable
class Backend(Protocol):
    """What guestlab asks of an engine."""

    name: str
    #: what the backend supports: "systemd", "clone", "snapshot", "nested", "vm"
    capabilities: frozenset[str]
    #: what `systemd-detect-virt` prints inside its machines (the truth checks compare with)
    virtualization: str

    def availability(self) -> Availability:
        """Say whether the engine answers, without raising."""
        ...

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        """Make the catalog image usable, building it when missing and `build` is true."""
        ...

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        """Create and start a machine, returning when it is ready for commands."""
        ...

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        """Run argv as root in the machine; never longer than `timeout` seconds."""
        ...

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        """Write a file into the machine, owned by root."""
        ...

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        """Create `target` as a copy of the filesystem of `source` and start it."""
        ...

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        """Record the machines' current state as the lab's starting state."""
        ...

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        """Put the machines back into the state recorded by `snapshot`."""
        ...

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        """Reboot the machines for real and return once each has booted again: every
        process ends (shells in them too), /run and /tmp come back empty, units start from
        their enablement, the disk is kept."""
        ...

    def destroy(self, lab: LabRef) -> FoundResources:
        """Remove every resource labelled with the lab; return what was removed."""
        ...

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        """Resources of one lab, or of every lab of this state store, keyed by lab key."""
        ...

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        """A host command that opens an interactive root shell in the machine."""
        ...

    def host_root_risk(self) -> str | None:
        """None when root in a machine has no power over the host (a user namespace, an
        unprivileged container); else one sentence that names the risk on this host."""
        ...


@runtime_checkable
class ImageStore(Protocol):
    """Optional: an engine that keeps imported images it can be asked about and that
    `guestlab image build --rebuild` imports again (Docker). Others build on demand."""

    def has_image(self, image: str) -> bool:
        """Whether the engine holds the catalog image `image` now."""
        ...

    def import_image(self, image: str, tarball: Path, progress: Progress) -> None:
        """Import the root file system `tarball` as `image`, replacing what was there."""
        ...


@runtime_checkable
class ImageRemoval(Protocol):
    """Optional: an engine whose copy of an image `guestlab image rm` can remove."""

    def remove_image(self, image: str) -> bool:
        """Remove the engine's copy of `image`; False when it had none. Machines made from
        it keep running where the engine allows (it then keeps what they use)."""
        ...


@runtime_checkable
class ImageManifests(Protocol):
    """Optional: an engine whose machines do not start from the image's tarball as it is
    (Vagrant's boxes add a kernel and packages) says which file hashes they start from."""

    def image_manifest(self, image: str) -> Manifest | None:
        """The manifest of what `image`'s machines start from here; None when unknown."""
        ...


@runtime_checkable
class MachineRemoval(Protocol):
    """Optional: an engine that removes one machine of a lab and nothing else (a pool's
    claimed lab makes its clones again on `reset`)."""

    def remove_machine(self, lab: LabRef, machine: str) -> None:
        """Remove the machine and its disk; nothing when it does not exist."""
        ...


@runtime_checkable
class StartCopies(Protocol):
    """Optional: an engine that makes a new machine from another one's starting state (what
    `snapshot` saved), as grading machines with `state: start` need."""

    def clone_start(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        """Create `target` from `source`'s starting state and boot it; `source` untouched."""
        ...


@runtime_checkable
class Members(Protocol):
    """Optional: an engine that may be a cluster whose members hold the labs (LXD). The
    engine places them; an instructor may name a lab's member, and the class commands
    show where each lab is and which members are offline."""

    def clustered(self) -> bool:
        """Whether the engine is a cluster now (False: none of the rest means anything)."""
        ...

    def place(self, lab: LabRef, member: str | None) -> None:
        """Put the lab's machines made from now on on `member` (None: the engine's choice)."""
        ...

    def placement(self, labs: Sequence[tuple[LabRef, Sequence[str]]]) -> dict[str, str]:
        """The member each of these labs (given with its machines' names) is on, by key."""
        ...

    def offline_members(self) -> set[str]:
        """The members that do not answer now."""
        ...

    def memory_by_member(self) -> dict[str, int]:
        """Bytes of memory free on each online member."""
        ...


#: the kinds of file a FileReader reports (`absent`: nothing at that path)
FILE_KINDS = ("regular", "directory", "symlink", "fifo", "socket", "char", "block", "absent")


@dataclass(frozen=True)
class FileProbe:
    """One path of a machine as the engine sees it: what it is, never more than asked of it."""

    kind: str  # one of FILE_KINDS, of the path itself (a symlink is not followed)
    mode: int = 0  # permission bits (and setuid, setgid, sticky)
    uid: int = 0  # owner as the machine numbers it
    size: int = 0
    #: at most `limit` bytes of a regular file's content (empty for every other kind)
    data: bytes = b""
    #: where a symlink points, as stored in it
    target: str = ""

    @property
    def exists(self) -> bool:
        return self.kind != "absent"


@runtime_checkable
class FileReader(Protocol):
    """Optional: the engine reads a machine's files itself, with none of the machine's
    binaries involved (Docker's archive API, LXD's file API, the host's view of nspawn)."""

    def read_file(self, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe | None:
        """The path (not followed when it is a symlink) and at most `limit` bytes of it;
        None when the engine cannot read this machine's files from here (a remote one)."""
        ...


@runtime_checkable
class Attachable(Protocol):
    """Optional: an engine that gives a host command attached to a command in a machine
    (the SSH door runs `ssh HOST CMD` and shells this way). Every engine has it."""

    def attach_argv(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool
    ) -> list[str]:
        """A host command that runs argv as root in the machine, its stdin, stdout and
        stderr those of the host command; `tty`: the host command runs under a terminal
        and argv gets one in the machine, else the streams stay apart and unchanged."""
        ...


@runtime_checkable
class ToolStager(Protocol):
    """Optional: a backend that copies a trusted tool into a machine its own way (an
    executable place, out of reach of the machine's own binaries), and removes it after."""

    def stage_tool(self, lab: LabRef, machine: str, name: str, data: bytes) -> str | None:
        """Copy `data` into a fresh directory of the machine; the tool's path there (None:
        not from here, let `put_file` copy it)."""
        ...

    def unstage_tool(self, lab: LabRef, machine: str, path: str) -> None:
        """Remove a tool `stage_tool` copied in, and its directory; never raises."""
        ...
