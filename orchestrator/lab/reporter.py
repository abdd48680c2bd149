"""Where the lifecycle says what it is doing: nothing in `orchestrator.lab` prints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class Reporter(Protocol):
    """Where the lifecycle says what it is doing."""

    def step(self, name: str) -> contextlib.AbstractContextManager[None]: ...

    def line(self, text: str) -> None: ...


class Silent:
    """A Reporter that says nothing (tests, JSON output)."""

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        yield

    def line(self, text: str) -> None:
        pass
