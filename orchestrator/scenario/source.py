"""Reading a scenario file's bytes, bounded: shared by the loader and the scenario cache,
which must read a file without importing the YAML reader or pydantic."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import Problem, ScenarioError, UsageError
from orchestrator.messages import _

MAX_BYTES = 512 * 1024


def read_source(path: Path) -> bytes:
    """The file's bytes; UsageError when it cannot be read, ScenarioError when too large."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ScenarioError([Problem(str(path), 1, 1, "", too_large())])
        with path.open("rb") as f:
            # Read one byte past the limit: a FIFO or /dev/zero reports size 0.
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UsageError(
            _("cannot read scenario {path}: {error}").format(path=path, error=e.strerror or e)
        ) from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError([Problem(str(path), 1, 1, "", too_large())])
    return raw


def too_large() -> str:
    return _("file is larger than {size} KiB").format(size=MAX_BYTES // 1024)
