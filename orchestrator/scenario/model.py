"""The scenario format, version 1, as frozen dataclasses (see docs/scenario-format.md).

The types check the shape of one file when pydantic validates into them (`model_base`);
cross-references between its parts are checked by `scenario.load`, which also locates
every problem in the file. A type's own invariants (`__post_init__`) hold however it is
made: validated, or built from the cache of validated scenarios.

No `from __future__ import annotations` here nor in `translation_model`: the types'
annotations are objects made once, with the module's bytecode, rather than texts that
every command reading a scenario from the cache would compile again (`field_types`).
"""

import re
from dataclasses import field
from typing import Annotated, Any, Literal

from orchestrator.messages import N_, _
from orchestrator.scenario.model_base import Rule, Text, strict
from orchestrator.scenario.translation_model import Translations

NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"  # no "--": it separates scenario and student in lab keys
TASK_ID = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
SIZE = r"^\d+(\.\d+)?[KMG]?$"
PARAMETER = r"^[A-Za-z_][A-Za-z0-9_]*$"

Name = Annotated[str, Rule(pattern=NAME, max_length=40)]


def _compiles(value: str, _before: dict[str, Any]) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(_("not a valid regular expression: {error}").format(error=e)) from None
    return value


#: a regular expression, checked to compile
Regex = Annotated[str, Rule(check=_compiles)]


def _exactly_one(model: object, fields: tuple[str, ...], what: str) -> None:
    """One of `fields` is set; else a ValueError naming them and what `what` (a msgid) has."""
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        # the message is said here, in the reader's language: pydantic hands it on as is
        said = (
            _("{what} needs exactly one of {choices} (has: {given})")
            if given
            else _("{what} needs exactly one of {choices} (has: none)")
        )
        raise ValueError(
            said.format(what=_(what), choices=" | ".join(fields), given=", ".join(given))
        )


@strict
class Metadata:
    """What the catalog shows of a scenario; `id` names its labs and its file."""

    id: Name
    title: Text
    objective: str = ""
    level: Literal["beginner", "intermediate", "advanced"] = "beginner"
    duration: Annotated[str, Rule(pattern=r"^\d+[smh]$")] = "15m"
    tags: list[str] = field(default_factory=list)


@strict
class Parameter:
    """A per-student value: one of `choices`, or `random` of some `length`."""

    choices: Annotated[list[str], Rule(min_length=1)] | None = None
    random: Literal["hex", "digits", "word"] | None = None
    length: Annotated[int, Rule(ge=1, le=64)] = 8

    def __post_init__(self) -> None:
        _exactly_one(self, ("choices", "random"), N_("a parameter"))


@strict
class Resources:
    """A machine's limits; unset ones come from the machine it copies, else the defaults."""

    memory: Annotated[str, Rule(pattern=SIZE)] | None = None
    cpus: Annotated[float, Rule(gt=0, le=64)] | None = None
    pids: Annotated[int, Rule(ge=16, le=65536)] | None = None
    #: bound on what the machine may write to its disk (default 2G)
    disk: Annotated[str, Rule(pattern=SIZE)] | None = None


@strict
class FileCopy:
    """A file copied from `labs/<id>/` into the machine before the setup steps."""

    src: Text
    dest: Annotated[str, Rule(pattern=r"^/")]
    mode: Annotated[str, Rule(pattern=r"^0?[0-7]{3,4}$")] | None = None


@strict
class SeedFile:
    """A file written into a grading machine before its boot: a lab machine's file as it is
    at check time (`machine` + `path`), or a text of the scenario's (`content`)."""

    machine: Name | None = None
    path: Annotated[str, Rule(pattern=r"^/")] | None = None
    content: str | None = None
    dest: Annotated[str, Rule(pattern=r"^/")]

    def __post_init__(self) -> None:
        if (self.machine is None) != (self.path is None):
            raise ValueError(_("a seed read from a machine needs both `machine` and `path`"))
        _exactly_one(self, ("path", "content"), N_("a seed"))


@strict
class Grading:
    """How a grading machine is made, anew at every check (see docs/scenario-format.md)."""

    #: current: a copy of the source as the student left it; start: as `up` left it
    state: Literal["current", "start"] = "current"
    #: files read from lab machines and written into the copy before its first boot
    seed: Annotated[list[SeedFile], Rule(max_length=16)] = field(default_factory=list)


#: extra block devices of one machine: at most this many, each of at most MAX_DISK_SIZE
MAX_DISKS = 8
MAX_DISK_SIZE = "64G"


def size_bytes(text: str) -> int:
    """Bytes of a size such as `512K`, `1.5G` or `4096` (the SIZE pattern)."""
    unit = text[-1].upper() if text[-1].isalpha() else ""
    return int(float(text[:-1] if unit else text) * 1024 ** " KMG".index(unit or " "))


def _disk_size(value: str, _before: dict[str, Any]) -> str:
    if not 1024**2 <= size_bytes(value) <= size_bytes(MAX_DISK_SIZE):
        said = _("a disk holds from 1M to {most} (has {size})")
        raise ValueError(said.format(most=MAX_DISK_SIZE, size=value))
    return value


@strict
class Disk:
    """An extra, empty block device of a virtual machine (vdb, vdc, ... in the guest)."""

    size: Annotated[
        str,
        Rule(
            pattern=SIZE,
            check=_disk_size,
            description=f"Capacity, as resources' sizes: 1M to {MAX_DISK_SIZE}.",
        ),
    ]


@strict
class Machine:
    """One machine of the lab: a container or virtual machine, or a copy of another one."""

    name: Name
    #: container (default): the lab's backend; vm: a real virtual machine (Vagrant backend)
    kind: Literal["container", "vm"] | None = None
    image: str | None = None
    init: Literal["systemd", "none"] | None = None
    hostname: Annotated[str, Rule(pattern=NAME)] | None = None
    resources: Resources = Resources()
    files: list[FileCopy] = field(default_factory=list)
    clone_of: Name | None = None
    #: made anew by every check, for grading only: a copy of `clone_of` that boots on its
    #: own; nobody works in it, `up` does not make it and the check removes it
    grading: Annotated[
        Grading | None,
        Rule(
            description="A machine made by every check from a copy of `clone_of`, booted, "
            "graded and removed: what a new machine made from the student's work would do."
        ),
    ] = None

    #: extra empty block devices; virtual machines only (references.py says when not)
    disks: Annotated[
        list[Disk],
        Rule(
            max_length=MAX_DISKS,
            description="Extra empty block devices of a virtual machine (`kind: vm`, or a "
            "scenario on the vagrant backend only), in the guest vdb, vdc, ...",
        ),
    ] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.grading is not None and self.clone_of is None:
            raise ValueError(_("a grading machine is a copy: it needs `clone_of`"))
        if self.clone_of is not None:
            inherited = [f for f in ("kind", "image", "init") if getattr(self, f) is not None]
            if self.files:
                inherited.append("files")
            if inherited:
                said = _("a clone takes {fields} from `{source}`; remove it here")
                raise ValueError(said.format(fields=", ".join(inherited), source=self.clone_of))
            if self.disks:
                raise ValueError(_("a clone is a copy of one system disk: it has no extra `disks`"))


@strict
class Step:
    """A command run as root in one machine (setup, solutions)."""

    machine: Name
    run: Text
    timeout: Annotated[float, Rule(gt=0, le=3600)] = 300.0


@strict
class TextMatch:
    """What a `run` check's output must be: exactly one of equals, contains, matches."""

    equals: str | None = None
    contains: str | None = None
    matches: Regex | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, ("equals", "contains", "matches"), N_("stdout"))


@strict
class FileCondition:
    """A file as it must be in the machine."""

    path: Annotated[str, Rule(pattern=r"^/")]
    exists: bool = True
    contains: str | None = None
    matches: Regex | None = None
    mode: Annotated[str, Rule(pattern=r"^0?[0-7]{3,4}$")] | None = None
    owner: str | None = None


@strict
class ServiceCondition:
    """A systemd unit as it must be in the machine."""

    name: Text
    active: bool | None = None
    enabled: bool | None = None


@strict
class MachinesCommand:
    """One command run in several machines, its outputs compared."""

    machines: Annotated[list[Name], Rule(min_length=2)]
    run: Text


#: the check forms, each the field of a Check that holds its condition; what each runs and
#: how it judges is in `orchestrator.checks` (one module per form, registered once there)
CHECK_FORMS = ("run", "file", "service", "distinct", "equal", "kept")
#: the forms that name their machines inside their condition; the others run on `machine`
MULTI_MACHINE_FORMS = ("distinct", "equal")


@strict
class Check:
    """One graded condition; exactly one of the forms in CHECK_FORMS."""

    name: str | None = None
    fail_message: str | None = None
    timeout: Annotated[float, Rule(gt=0, le=600)] = 30.0
    machine: Name | None = None
    run: Text | None = None
    exit_code: Annotated[int, Rule(ge=0, le=255)] | None = None
    stdout: TextMatch | None = None
    file: FileCondition | None = None
    service: ServiceCondition | None = None
    distinct: MachinesCommand | None = None
    equal: MachinesCommand | None = None
    #: a command whose output must be the same before and after the task's reboot
    kept: Text | None = None

    @property
    def form(self) -> str:
        return next(f for f in CHECK_FORMS if getattr(self, f) is not None)

    @property
    def machines(self) -> list[str]:
        """The machines this check runs in."""
        multi = self.distinct or self.equal
        return list(multi.machines) if multi else [self.machine or ""]

    def __post_init__(self) -> None:
        _exactly_one(self, CHECK_FORMS, N_("a check"))
        form = self.form
        if form not in MULTI_MACHINE_FORMS and self.machine is None:
            raise ValueError(_("a `{form}` check needs `machine`").format(form=form))
        if form in MULTI_MACHINE_FORMS and self.machine is not None:
            raise ValueError(
                _("a `{form}` check names its machines inside `{form}`").format(form=form)
            )
        if form != "run" and (self.exit_code is not None or self.stdout is not None):
            raise ValueError(_("`exit_code` and `stdout` belong to a `run` check"))


@strict
class Task:
    """What the student does, graded by its checks and applied by its solution."""

    id: Annotated[str, Rule(pattern=TASK_ID)]
    title: Text
    instructions: str = ""
    hints: list[str] = field(default_factory=list)
    points: Annotated[int, Rule(ge=0, le=1000)] = 1
    checks: Annotated[list[Check], Rule(min_length=1)]
    solution: list[Step] = field(default_factory=list)
    #: tasks to do before this one (earlier ones): a report says "do X first" while they fail
    requires: list[Annotated[str, Rule(pattern=TASK_ID)]] = field(default_factory=list)
    #: graded only after the machines its checks name have been restarted: a change that
    #: lasts only until the next boot (a unit started, not enabled) does not pass
    after_reboot: Annotated[
        bool,
        Rule(
            description="Restart the machines this task's checks name before grading it, "
            "so that only a change that survives a reboot passes."
        ),
    ] = False

    @property
    def machines(self) -> list[str]:
        """The machines this task's checks run in, each once, in order."""
        return list(dict.fromkeys(m for c in self.checks for m in c.machines))

    def __post_init__(self) -> None:
        if not self.after_reboot and any(c.kept is not None for c in self.checks):
            raise ValueError(_("a `kept` check compares outputs across a reboot: set after_reboot"))


BACKENDS = ("docker", "lxd", "nspawn", "vagrant")


@strict
class Scenario:
    """A lab: its machines, their starting state, and the tasks graded in them."""

    apiVersion: Literal["guestlab/v1"]
    kind: Literal["Scenario"]
    metadata: Metadata
    description: str = ""
    backends: Annotated[list[Literal[BACKENDS]], Rule(min_length=1)] = field(  # type: ignore[valid-type]
        default_factory=lambda: ["docker"]
    )
    parameters: dict[Annotated[str, Rule(pattern=PARAMETER)], Parameter] = field(
        default_factory=dict
    )
    machines: Annotated[list[Machine], Rule(min_length=1)]
    setup: list[Step] = field(default_factory=list)
    tasks: Annotated[list[Task], Rule(min_length=1)]
    #: language tag (pt-BR) -> the student-facing texts in that language
    translations: Translations = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.metadata.id

    def machine(self, name: str) -> Machine:
        # KeyError, not a bare next(): a StopIteration leaking into a generator ends it silently.
        found = next((m for m in self.machines if m.name == name), None)
        if found is None:
            raise KeyError(f"scenario {self.id} has no machine {name!r}")
        return found

    def task(self, task_id: str) -> Task:
        found = next((t for t in self.tasks if t.id == task_id), None)
        if found is None:
            raise KeyError(f"scenario {self.id} has no task {task_id!r}")
        return found

    @property
    def max_score(self) -> int:
        return sum(t.points for t in self.tasks)

    def root_of(self, name: str) -> Machine:
        """The machine a clone was ultimately made from (itself if not a clone)."""
        m = self.machine(name)
        while m.clone_of:
            m = self.machine(m.clone_of)
        return m

    @property
    def lab_machines(self) -> list[Machine]:
        """The machines `up` makes and students work in: all but the grading machines."""
        return [m for m in self.machines if m.grading is None]

    @property
    def grading_machines(self) -> list[Machine]:
        return [m for m in self.machines if m.grading is not None]
