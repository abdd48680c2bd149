"""The `file` form: whether a path exists, its mode and owner, and what a regular file holds."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import ExecResult
from orchestrator.checks.form import (
    PROBE_OUTPUT_LIMIT,
    Form,
    Probe,
    sh,
    tail,
    text_problem,
)
from orchestrator.messages import _
from orchestrator.scenario.model import Check, FileCondition

#: the largest file a `file` check reads (its first line, mode and owner, fits beside it)
MAX_FILE_BYTES = PROBE_OUTPUT_LIMIT - 1024
MISSING, NOT_REGULAR, TOO_BIG = 3, 4, 5
# positional parameters keep paths out of the shell text; only a regular file is read (a
# FIFO could block or never end), and only when its size is within bounds
FILE_PROBE = (
    'if [ -e "$1" ] || [ -L "$1" ]; then stat -c "%a %U" -- "$1" || exit 1; '
    f'if [ ! -f "$1" ]; then stat -L -c %F -- "$1" 2>/dev/null; exit {NOT_REGULAR}; fi; '
    's=$(stat -L -c %s -- "$1") || exit 1; '
    f'if [ "$s" -gt {MAX_FILE_BYTES} ]; then echo "$s"; exit {TOO_BIG}; fi; '
    # one byte more than a check reads: a file growing, or one whose size says 0 (/proc)
    f'exec head -c {MAX_FILE_BYTES + 1} -- "$1"; else exit {MISSING}; fi'
)


def _condition(check: Check) -> FileCondition:
    assert check.file is not None
    return check.file


def _probes(check: Check) -> list[Probe]:
    cond = _condition(check)
    argv = sh(FILE_PROBE, cond.path)
    return [Probe(check.machine or "", argv, reads=cond.path, owner_name=cond.owner is not None)]


def _judge(check: Check, results: Sequence[ExecResult]) -> str | None:
    cond, res = _condition(check), results[0]
    exists = res.exit_code != MISSING
    if not cond.exists:
        return _("{path} exists").format(path=cond.path) if exists else None
    if not exists:
        return _("{path} does not exist").format(path=cond.path)
    if res.exit_code not in (0, NOT_REGULAR, TOO_BIG):
        return _("cannot read {path}: {error}").format(path=cond.path, error=tail(res.stderr))
    head, _sep, content = res.stdout.partition("\n")
    return _stat_problem(cond, head) or _content_problem(cond, res.exit_code, content)


def _stat_problem(cond: FileCondition, head: str) -> str | None:
    """What is wrong with the mode and owner that the probe's first line gives."""
    mode_text, _sep, owner = head.partition(" ")
    try:
        mode = int(mode_text, 8)
    except ValueError:  # not what stat prints: the machine's tools are not to be trusted
        return _("cannot read the mode of {path}: {seen}").format(
            path=cond.path, seen=repr(tail(head, 40))
        )
    if cond.mode is not None and mode != int(cond.mode, 8):
        return _("{path} has mode {mode}, expected {expected}").format(
            path=cond.path, mode=f"{mode:04o}", expected=f"{int(cond.mode, 8):04o}"
        )
    if cond.owner is not None and owner != cond.owner:
        return _("{path} is owned by {owner}, expected {expected}").format(
            path=cond.path, owner=owner, expected=cond.owner
        )
    return None


def _content_problem(cond: FileCondition, code: int, content: str) -> str | None:
    """What is wrong with the file's content, when the check reads it at all."""
    if cond.contains is None and cond.matches is None:
        return None
    if code == NOT_REGULAR:
        kind = tail(content, 40) or _("not a regular file")
        return _("{path} is not a regular file ({kind}), so it was not read").format(
            path=cond.path, kind=kind
        )
    if code == TOO_BIG:
        size = tail(content, 20)
        return _("{path} is {size} bytes, more than the {limit} a check reads").format(
            path=cond.path, size=size, limit=MAX_FILE_BYTES
        )
    if len(content.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        return _("{path} is more than {limit} bytes, more than a check reads").format(
            path=cond.path, limit=MAX_FILE_BYTES
        )
    return text_problem(content, cond.contains, cond.matches, subject=cond.path)


def _title(check: Check) -> str:
    return f"{check.machine}: {_condition(check).path}"


FORM = Form("file", _probes, _judge, _title)
