"""The one exception tree and the exit codes the CLI maps it to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from orchestrator.messages import ngettext


class ExitCode(IntEnum):
    """Documented exit codes of every `guestlab` command."""

    OK = 0
    CHECKS_FAILED = 1
    USAGE = 2  # bad arguments, invalid scenario, unknown lab
    BACKEND_UNAVAILABLE = 3
    PROVISIONING_FAILED = 4
    LAB_BUSY = 5  # another guestlab command holds the lab, or the state store is unusable
    INTERRUPTED = 130


class GuestlabError(Exception):
    """Root of every error guestlab reports to a user as one sentence."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(GuestlabError):
    """The command cannot be carried out as asked (unknown lab, task, machine...)."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem found in a scenario file, located for the author."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ScenarioError(GuestlabError):
    """A scenario file is invalid; carries every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        n = len(self.problems)
        first = self.problems[0].file if self.problems else "scenario"
        found = ngettext("{file}: {n} problem found", "{file}: {n} problems found", n)
        super().__init__(found.format(file=first, n=n))


class BackendUnavailable(GuestlabError):
    """The engine behind a backend cannot be used; the hint says how to fix it."""

    exit_code = ExitCode.BACKEND_UNAVAILABLE


class ProvisioningError(GuestlabError):
    """Creating, configuring or changing a lab's machines failed."""

    exit_code = ExitCode.PROVISIONING_FAILED


class MachineUnavailable(GuestlabError):
    """A machine of a lab is missing or not running."""

    exit_code = ExitCode.PROVISIONING_FAILED


class MemberUnreachable(MachineUnavailable):
    """A machine is on a cluster member that does not answer: nothing the student did."""

    def __init__(self, member: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.member = member


class LabBusy(GuestlabError):
    """Another guestlab process is working on the same lab."""

    exit_code = ExitCode.LAB_BUSY


class StateError(GuestlabError):
    """The state store cannot be read or written."""

    exit_code = ExitCode.LAB_BUSY


class ProofFailed(GuestlabError):
    """A step of `guestlab prove` did not give what a shippable scenario must."""

    exit_code = ExitCode.CHECKS_FAILED
