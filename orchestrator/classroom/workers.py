"""The workers of a class-wide command: one student's lab per thread, each one's outcome.

One student's failure is recorded as that student's sentence and never stops the others;
progress goes to a `ClassProgress`, and nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from orchestrator import lab as lifecycle
from orchestrator.errors import GuestlabError, ProvisioningError
from orchestrator.messages import _, speaking

T = TypeVar("T")


class ClassError(GuestlabError):
    """A class-wide command could not do its work for some students (see its outcomes)."""

    exit_code = ProvisioningError.exit_code


class ClassProgress(Protocol):
    """Where a class-wide command says how each student's lab is doing."""

    def reporter(self, student: str) -> lifecycle.Reporter: ...

    def finished(self, student: str, ok: bool, detail: str) -> None: ...


class SilentProgress:
    def reporter(self, student: str) -> lifecycle.Reporter:
        return lifecycle.Silent()

    def finished(self, student: str, ok: bool, detail: str) -> None:
        pass


@dataclass
class Outcome:
    """What happened to one student's lab."""

    student: str
    ok: bool
    detail: str = ""  # "up", "already up", or the error sentence
    seconds: float = 0.0
    hint: str | None = None
    error: BaseException | None = field(default=None, repr=False)


def in_parallel(parallel: int, items: Sequence[T], fn: Callable[[T], Outcome]) -> Iterator[Outcome]:
    """fn over items in `parallel` threads, yielding outcomes as they finish; each runs in a
    copy of the caller's context, so it speaks the command's language."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items) or 1))) as pool:
        futures: list[Future[Outcome]] = [pool.submit(speaking(fn), item) for item in items]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            for fut in futures:  # Ctrl-C: start no more labs; those under way finish
                fut.cancel()
            raise


def failed(student: str, e: BaseException, started: float) -> Outcome:
    if isinstance(e, GuestlabError):
        detail, hint = str(e), e.hint
    else:  # a bug: still this one student's failure, not the class's
        detail, hint = f"{_('internal error:')} {type(e).__name__}: {e}", None
    return Outcome(student, False, detail, time.monotonic() - started, hint, e)
