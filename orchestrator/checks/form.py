"""What a check form is, and what the judgements of every form share.

A form is the field of a `Check` that holds its condition (`run`, `file`, `service`,
`distinct`, `equal`: `scenario.model.CHECK_FORMS`). Its `Form` says what the check runs in
which machines (`probes`), how it judges what they printed (`judge`) and what the check is
called when its author named it not (`title`). `registry.FORMS` holds each form once.

The form modules share a shape on purpose (a typed accessor of the form's condition,
`_probes`, `_judge`, `_title`): that is this contract written once per form, not logic
repeated; what they have in common to compute lives here (`on_machine`, `text_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.backends.contract import ExecResult
from orchestrator.messages import _
from orchestrator.scenario.model import Check

#: the most of one stream of one probe that grading keeps; a probe printing more is stopped
#: there (in its machine) and its check fails: what a machine prints is untrusted
PROBE_OUTPUT_LIMIT = 64 * 1024
STDERR_LIMIT = 8 * 1024  # only ever shown as a short tail


@dataclass(frozen=True)
class Probe:
    """One command a check runs in one machine."""

    machine: str
    argv: tuple[str, ...]
    #: a file probe: the path an engine that reads files itself (a FileReader) reads instead
    #: of running argv, giving what argv would print
    reads: str = ""
    #: ... and whether the file's owner is wanted by name (one more read: /etc/passwd)
    owner_name: bool = False
    #: run before the task's reboot (a `kept` check's first probe), not with the others
    before_reboot: bool = False


@dataclass(frozen=True)
class Unreachable:
    """A probe that could not run at all (machine gone, engine error)."""

    message: str


@dataclass(frozen=True)
class Tampered:
    """A probe whose machine binaries are not the image's: its result cannot be trusted."""

    message: str


Outcome = ExecResult | Unreachable | Tampered


@dataclass(frozen=True)
class Form:
    """One check form: what its check runs, how it judges the results, its default name."""

    #: the field of `Check` that holds this form's condition, a name in CHECK_FORMS
    name: str
    #: the commands a check of this form runs, in the order `judge` receives their results
    probes: Callable[[Check], list[Probe]]
    #: None when the check passes, else why not; it sees only probes that ran to their end
    #: (neither unreachable, timed out nor cut short: those fail before it is asked)
    judge: Callable[[Check, Sequence[ExecResult]], str | None]
    #: the check's name in reports when its author gave none
    title: Callable[[Check], str]


def sh(text: str, *args: str) -> tuple[str, ...]:
    """argv running shell `text` with positional parameters `args` ($1, $2, ...)."""
    return ("sh", "-c", text, "sh", *args)


def on_machine(check: Check, argv: tuple[str, ...]) -> list[Probe]:
    """The one probe of a form that runs on the check's `machine`."""
    return [Probe(check.machine or "", argv)]


def tail(text: str, limit: int = 200) -> str:
    """The end of `text` on one line, at most `limit` characters."""
    text = " ".join(text.strip().split())
    return text if len(text) <= limit else "..." + text[-limit:]


def text_problem(
    text: str, contains: str | None, matches: str | None, *, subject: str, shown: str = ""
) -> str | None:
    """Why `text` (called `subject`, or `shown` when quoting a regex miss) fails a condition."""
    if contains is not None and contains not in text:
        return _("{subject} does not contain {text}").format(subject=subject, text=repr(contains))
    if matches is not None and not re.search(matches, text):
        return _("{subject} does not match /{regex}/").format(
            subject=shown or subject, regex=matches
        )
    return None
