"""The scenario format, version 1, as pydantic models (see docs/scenario-format.md).

The models check the shape of one file; cross-references between its parts are checked
by `scenario.load`, which also locates every problem in the file.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.scenario.model_base import Strict, Text
from orchestrator.scenario.translation_model import (
    LANGUAGE,
    Translation,
    translation_problems,
)

NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"  # no "--": it separates scenario and student in lab keys
TASK_ID = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
SIZE = r"^\d+(\.\d+)?[KMG]?$"

Name = Annotated[str, Field(pattern=NAME, max_length=40)]


def _compiles(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
    return value


def _exactly_one(model: BaseModel, fields: tuple[str, ...], what: str) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        choice = " | ".join(fields)
        have = ", ".join(given) or "none"
        raise ValueError(f"{what} needs exactly one of {choice} (has: {have})")


class Metadata(Strict):
    id: Name
    title: Text
    objective: str = ""
    level: Literal["beginner", "intermediate", "advanced"] = "beginner"
    duration: Annotated[str, Field(pattern=r"^\d+[smh]$")] = "15m"
    tags: list[str] = []


class Parameter(Strict):
    """A per-student value: one of `choices`, or `random` of some `length`."""

    choices: Annotated[list[str], Field(min_length=1)] | None = None
    random: Literal["hex", "digits", "word"] | None = None
    length: Annotated[int, Field(ge=1, le=64)] = 8

    @model_validator(mode="after")
    def _one_source(self) -> Parameter:
        _exactly_one(self, ("choices", "random"), "a parameter")
        return self


class Resources(Strict):
    memory: Annotated[str, Field(pattern=SIZE)] | None = None
    cpus: Annotated[float, Field(gt=0, le=64)] | None = None
    pids: Annotated[int, Field(ge=16, le=65536)] | None = None
    #: bound on what the machine may write to its disk (default 2G)
    disk: Annotated[str, Field(pattern=SIZE)] | None = None


class FileCopy(Strict):
    src: Text
    dest: Annotated[str, Field(pattern=r"^/")]
    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3,4}$")] | None = None


class SeedFile(Strict):
    """A file written into a grading machine before its boot: a lab machine's file as it is
    at check time (`machine` + `path`), or a text of the scenario's (`content`)."""

    machine: Name | None = None
    path: Annotated[str, Field(pattern=r"^/")] | None = None
    content: str | None = None
    dest: Annotated[str, Field(pattern=r"^/")]

    @model_validator(mode="after")
    def _one_source(self) -> SeedFile:
        if (self.machine is None) != (self.path is None):
            raise ValueError("a seed read from a machine needs both `machine` and `path`")
        _exactly_one(self, ("path", "content"), "a seed")
        return self


class Grading(Strict):
    """How a grading machine is made, anew at every check (see docs/scenario-format.md)."""

    #: current: a copy of the source as the student left it; start: as `up` left it
    state: Literal["current", "start"] = "current"
    #: files read from lab machines and written into the copy before its first boot
    seed: Annotated[list[SeedFile], Field(max_length=16)] = []


#: extra block devices of one machine: at most this many, each of at most MAX_DISK_SIZE
MAX_DISKS = 8
MAX_DISK_SIZE = "64G"


def size_bytes(text: str) -> int:
    """Bytes of a size such as `512K`, `1.5G` or `4096` (the SIZE pattern)."""
    unit = text[-1].upper() if text[-1].isalpha() else ""
    return int(float(text[:-1] if unit else text) * 1024 ** " KMG".index(unit or " "))


class Disk(Strict):
    """An extra, empty block device of a virtual machine (vdb, vdc, ... in the guest)."""

    size: Annotated[
        str,
        Field(pattern=SIZE, description=f"Capacity, as resources' sizes: 1M to {MAX_DISK_SIZE}."),
    ]

    @field_validator("size")
    @classmethod
    def _bounded(cls, value: str) -> str:
        if not 1024**2 <= size_bytes(value) <= size_bytes(MAX_DISK_SIZE):
            raise ValueError(f"a disk holds from 1M to {MAX_DISK_SIZE} (has {value})")
        return value


class Machine(Strict):
    name: Name
    #: container (default): the lab's backend; vm: a real virtual machine (Vagrant backend)
    kind: Literal["container", "vm"] | None = None
    image: str | None = None
    init: Literal["systemd", "none"] | None = None
    hostname: Annotated[str, Field(pattern=NAME)] | None = None
    # model_construct: an empty default built without validating, so that defining the
    # models builds no validator (and loads no pydantic plugin) before one is needed
    resources: Resources = Resources.model_construct()
    files: list[FileCopy] = []
    clone_of: Name | None = None
    #: made anew by every check, for grading only: a copy of `clone_of` that boots on its
    #: own; nobody works in it, `up` does not make it and the check removes it
    grading: Annotated[
        Grading | None,
        Field(
            description="A machine made by every check from a copy of `clone_of`, booted, "
            "graded and removed: what a new machine made from the student's work would do."
        ),
    ] = None

    #: extra empty block devices; virtual machines only (references.py says when not)
    disks: Annotated[
        list[Disk],
        Field(
            max_length=MAX_DISKS,
            description="Extra empty block devices of a virtual machine (`kind: vm`, or a "
            "scenario on the vagrant backend only), in the guest vdb, vdc, ...",
        ),
    ] = []

    @model_validator(mode="after")
    def _clone_inherits(self) -> Machine:
        if self.grading is not None and self.clone_of is None:
            raise ValueError("a grading machine is a copy: it needs `clone_of`")
        if self.clone_of is not None:
            inherited = [f for f in ("kind", "image", "init") if getattr(self, f) is not None]
            if self.files:
                inherited.append("files")
            if inherited:
                raise ValueError(
                    f"a clone takes {', '.join(inherited)} from `{self.clone_of}`; remove it here"
                )
            if self.disks:
                raise ValueError("a clone is a copy of one system disk: it has no extra `disks`")
        return self


class Step(Strict):
    machine: Name
    run: Text
    timeout: Annotated[float, Field(gt=0, le=3600)] = 300


class TextMatch(Strict):
    equals: str | None = None
    contains: str | None = None
    matches: str | None = None

    _regex = field_validator("matches")(_compiles)

    @model_validator(mode="after")
    def _one(self) -> TextMatch:
        _exactly_one(self, ("equals", "contains", "matches"), "stdout")
        return self


class FileCondition(Strict):
    path: Annotated[str, Field(pattern=r"^/")]
    exists: bool = True
    contains: str | None = None
    matches: str | None = None
    mode: Annotated[str, Field(pattern=r"^0?[0-7]{3,4}$")] | None = None
    owner: str | None = None

    _regex = field_validator("matches")(_compiles)


class ServiceCondition(Strict):
    name: Text
    active: bool | None = None
    enabled: bool | None = None


class MachinesCommand(Strict):
    machines: Annotated[list[Name], Field(min_length=2)]
    run: Text


#: the check forms, each the field of a Check that holds its condition; what each runs and
#: how it judges is in `orchestrator.checks` (one module per form, registered once there)
CHECK_FORMS = ("run", "file", "service", "distinct", "equal", "kept")
#: the forms that name their machines inside their condition; the others run on `machine`
MULTI_MACHINE_FORMS = ("distinct", "equal")


class Check(Strict):
    """One graded condition; exactly one of the forms in CHECK_FORMS."""

    name: str | None = None
    fail_message: str | None = None
    timeout: Annotated[float, Field(gt=0, le=600)] = 30
    machine: Name | None = None
    run: Text | None = None
    exit_code: Annotated[int, Field(ge=0, le=255)] | None = None
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

    @model_validator(mode="after")
    def _one_form(self) -> Check:
        _exactly_one(self, CHECK_FORMS, "a check")
        form = self.form
        if form not in MULTI_MACHINE_FORMS and self.machine is None:
            raise ValueError(f"a `{form}` check needs `machine`")
        if form in MULTI_MACHINE_FORMS and self.machine is not None:
            raise ValueError(f"a `{form}` check names its machines inside `{form}`")
        if form != "run" and (self.exit_code is not None or self.stdout is not None):
            raise ValueError("`exit_code` and `stdout` belong to a `run` check")
        return self


class Task(Strict):
    id: Annotated[str, Field(pattern=TASK_ID)]
    title: Text
    instructions: str = ""
    hints: list[str] = []
    points: Annotated[int, Field(ge=0, le=1000)] = 1
    checks: Annotated[list[Check], Field(min_length=1)]
    solution: list[Step] = []
    #: tasks to do before this one (earlier ones): a report says "do X first" while they fail
    requires: list[Annotated[str, Field(pattern=TASK_ID)]] = []
    #: graded only after the machines its checks name have been restarted: a change that
    #: lasts only until the next boot (a unit started, not enabled) does not pass
    after_reboot: Annotated[
        bool,
        Field(
            description="Restart the machines this task's checks name before grading it, "
            "so that only a change that survives a reboot passes."
        ),
    ] = False

    @property
    def machines(self) -> list[str]:
        """The machines this task's checks run in, each once, in order."""
        return list(dict.fromkeys(m for c in self.checks for m in c.machines))

    @model_validator(mode="after")
    def _kept_needs_reboot(self) -> Task:
        if not self.after_reboot and any(c.kept is not None for c in self.checks):
            raise ValueError("a `kept` check compares outputs across a reboot: set after_reboot")
        return self


BACKENDS = ("docker", "lxd", "nspawn", "vagrant")


class Scenario(Strict):
    apiVersion: Literal["guestlab/v1"]
    kind: Literal["Scenario"]
    metadata: Metadata
    description: str = ""
    backends: Annotated[list[Literal[BACKENDS]], Field(min_length=1)] = ["docker"]  # type: ignore[valid-type]
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Parameter] = {}
    machines: Annotated[list[Machine], Field(min_length=1)]
    setup: list[Step] = []
    tasks: Annotated[list[Task], Field(min_length=1)]
    #: language tag (pt-BR) -> the student-facing texts in that language
    translations: dict[Annotated[str, Field(pattern=LANGUAGE)], Translation] = {}

    @field_validator("translations")
    @classmethod
    def _translations_match_tasks(
        cls, value: dict[str, Translation], info: ValidationInfo
    ) -> dict[str, Translation]:
        tasks = info.data.get("tasks")
        if tasks is None:  # the tasks themselves are wrong: reported there
            return value
        problems = translation_problems(value, tasks)
        if problems:
            # located problems: pydantic prefixes each loc with `translations`
            raise ValidationError.from_exception_data("Scenario", problems)
        return value

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
