"""Problems of a scenario file, each located where the author wrote the spot it is about.

A `Loc` is the path of a value in the file's data (`("tasks", 0, "checks", 1, "run")`); the
YAML reader records where each key and value starts, and every later stage reports through
the same `Report`, so each message starts with `file:line:column:`.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import Problem

Loc = tuple[str | int, ...]
Pos = tuple[int, int]


class Report:
    """Problems found so far, and where each key and value of the file starts."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.values: dict[Loc, Pos] = {}
        self.keys: dict[Loc, Pos] = {}
        self.reported: set[Loc] = set()

    def where(self, loc: Loc, *, key: bool = False) -> Pos:
        """The position of `loc`, or of its nearest recorded ancestor."""
        if key and loc in self.keys:
            return self.keys[loc]
        while loc and loc not in self.values:
            loc = loc[:-1]
        return self.values.get(loc, (1, 1))

    def add(
        self,
        loc: Loc,
        message: str,
        *,
        key: bool = False,
        pos: Pos | None = None,
        unless_reported: bool = False,
    ) -> None:
        # Later stages skip a spot an earlier one already complained about.
        if unless_reported and loc in self.reported:
            return
        self.reported.add(loc)
        line, column = pos or self.where(loc, key=key)
        self.problems.append(Problem(self.file, line, column, dotted(loc), message))


def dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def position(mark: Any) -> Pos:
    """The 1-based (line, column) of a YAML mark."""
    return (mark.line + 1, mark.column + 1)


def clip(value: Any, width: int = 40) -> str:
    """`value` as text of at most `width` characters, for quoting it in a message."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
