"""A `file` probe answered by the engine (a FileReader) instead of the machine's binaries.

The result has the shape FILE_PROBE's output has (file.py judges both alike): the exit code
says missing, not regular or too big, the first line is the path's own mode and owner (a
symlink is not followed for them), then the content of what it leads to. Symlinks are
followed here, one read each, with the same lookup the engine gives every read: inside the
machine's root. Every read is bounded: a FIFO is never opened for reading, a file larger
than a check reads is never read past MAX_FILE_BYTES + 1.
"""

from __future__ import annotations

import posixpath

from orchestrator.backends.contract import ExecResult, FileProbe, FileReader, LabRef
from orchestrator.checks.file import MAX_FILE_BYTES, MISSING, NOT_REGULAR, TOO_BIG
from orchestrator.checks.form import Outcome, Probe, Unreachable
from orchestrator.errors import GuestlabError, MemberUnreachable
from orchestrator.messages import _

#: how many symlinks one path may go through (the kernel's own bound)
MAX_LINKS = 40
PASSWD_LIMIT = 256 * 1024
#: what `stat -L -c %F` calls each kind, as FILE_PROBE prints it
KIND_NAMES = {
    "directory": "directory",
    "fifo": "fifo",
    "socket": "socket",
    "char": "character special file",
    "block": "block special file",
    "symlink": "symbolic link",
}


def follow(reader: FileReader, lab: LabRef, machine: str, path: str, first: FileProbe) -> FileProbe:
    """What the symlink `first` at `path` leads to, after at most MAX_LINKS links."""
    here, got = path, first
    for _try in range(MAX_LINKS):
        if got.kind != "symlink":
            return got
        base = "/" if got.target.startswith("/") else posixpath.dirname(here)
        here = posixpath.normpath(posixpath.join(base, got.target))
        got = _read(reader, lab, machine, here, MAX_FILE_BYTES + 1)
    return FileProbe("symlink")  # a loop: not a regular file


def _read(reader: FileReader, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe:
    got = reader.read_file(lab, machine, path, limit)
    if got is None:  # it could read the first path: it can read the ones that follow
        raise GuestlabError(_("{path} could not be read through the engine").format(path=path))
    return got


def owner_of(reader: FileReader, lab: LabRef, machine: str, uid: int) -> str:
    """The machine's name for `uid` (its /etc/passwd, read by the engine), else the number."""
    passwd = _read(reader, lab, machine, "/etc/passwd", PASSWD_LIMIT)
    if passwd.kind == "regular":
        for line in passwd.data.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2] == str(uid):
                return fields[0]
    return str(uid)


def read_probe(reader: FileReader, lab: LabRef, machine: str, probe: Probe) -> Outcome | None:
    """The engine's answer to a file probe, shaped as FILE_PROBE's output; None when the
    engine cannot read files from here (the trusted shell reads it then)."""
    try:
        first = reader.read_file(lab, machine, probe.reads, MAX_FILE_BYTES + 1)
        if first is None:
            return None
        if not first.exists:
            return ExecResult(MISSING)
        owner = owner_of(reader, lab, machine, first.uid) if probe.owner_name else str(first.uid)
        head = f"{first.mode:o} {owner}\n"
        final = follow(reader, lab, machine, probe.reads, first)
    except MemberUnreachable:
        raise  # the lab is out of reach, not wrong: no grade at all
    except GuestlabError as e:
        return Unreachable(str(e))
    if final.kind != "regular":
        return ExecResult(NOT_REGULAR, head + KIND_NAMES.get(final.kind, "") + "\n")
    if final.size > MAX_FILE_BYTES:
        return ExecResult(TOO_BIG, f"{head}{final.size}\n")
    return ExecResult(0, head + final.data.decode("utf-8", "replace"))
