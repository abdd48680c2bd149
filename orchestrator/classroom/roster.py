"""The roster: a CSV file of `id,name,email[,ssh_key]` that an instructor writes by hand.

Every problem is reported at once, each as `FILE:LINE: message`, and a roster with any
problem is refused whole: nothing is provisioned for half a class.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.backends.contract import LabRef
from orchestrator.errors import UsageError
from orchestrator.messages import _

COLUMNS = ("id", "name", "email")
#: columns a roster may add: `ssh_key`, a student's public key for the SSH door, and
#: `lxd_target`, the LXD cluster member a student's lab goes to
OPTIONAL = ("ssh_key", "lxd_target")
MAX_BYTES = 1024 * 1024
MAX_STUDENTS = 500
#: what a student id may be: it names the student's lab, its resources and its labels
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
MAX_NAME = 200
#: one OpenSSH public key line: `TYPE BASE64 [COMMENT]` (never a private key, never two)
SSH_KEY_LINE = re.compile(r"^[a-z0-9@.-]{3,64} [A-Za-z0-9+/]{16,}={0,3}( [^\r\n]{0,200})?$")


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    email: str
    line: int
    ssh_key: str = ""  # an OpenSSH public key line, or ""
    lxd_target: str = ""


class RosterError(UsageError):
    """A roster has problems; carries every one of them, located."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{path}: {n} problem{'s' if n != 1 else ''} in the roster; nothing was provisioned",
            hint="fix every line listed above, then run the command again",
        )


def student_id_problem(student: str) -> str | None:
    """Why `student` cannot be a student id, or None when it can."""
    if not STUDENT_ID.match(student):
        return (
            f"student id {student!r} must be 1-40 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return None


def load(path: Path) -> list[Student]:
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as e:
        raise UsageError(
            _("cannot read the roster {path}: {error}").format(path=path, error=e.strerror or e)
        ) from None
    if len(raw) > MAX_BYTES:
        raise RosterError(str(path), [f"{path}: the file is larger than {MAX_BYTES} bytes"])
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets often save a byte-order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RosterError(str(path), [f"{path}:{line}: not UTF-8 text"]) from None
    return parse(text, str(path))


def read_rows(text: str, problem: Callable[[int, str], None]) -> list[tuple[int, list[str]]]:
    """The CSV's non-blank rows, each with the line it starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    last = 0
    try:
        for row in reader:
            rows.append((last + 1, row))  # a quoted field may span lines: where it starts
            last = reader.line_num
    except csv.Error as e:
        problem(last + 1, f"not valid CSV: {e}")
    return [(n, r) for n, r in rows if any(cell.strip() for cell in r)]


def header_problem(names: list[str]) -> str | None:
    """What is wrong with a header of these column names, if anything."""
    missing = [c for c in COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS + OPTIONAL]
    doubled = sorted({h for h in names if names.count(h) > 1})
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
    if doubled:
        parts.append(f"column(s) given twice: {', '.join(doubled)}")
    if not parts:
        return None
    return f"the header must be `id,name,email` and may add `ssh_key` ({'; '.join(parts)})"


def ssh_key_problem(text: str) -> str | None:
    """Why an `ssh_key` cell is not one public key, or None when it is (or is empty)."""
    if not text:
        return None
    # the cell itself is never repeated: it may be a private key pasted by mistake
    if not SSH_KEY_LINE.match(text):
        return "ssh_key is not an OpenSSH public key line (`ssh-ed25519 AAAA... comment`)"
    import asyncssh  # here: `guestlab --help` and rosters without keys never load it

    try:
        asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as e:
        return f"ssh_key is not an OpenSSH public key line ({e})"
    return None


def student_problems(
    sid: str, name: str, email: str, line: int, seen: dict[str, tuple[int, str]]
) -> list[str]:
    """What is wrong with one student's line; `seen`: lab key -> (line, id) so far."""
    found = []
    bad = student_id_problem(sid)
    if bad:
        found.append(bad)
    if not name:
        found.append("the name is empty")
    elif len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        found.append(f"the name must be at most {MAX_NAME} printable characters")
    if email and not EMAIL.match(email):
        found.append(f"{email!r} is not an e-mail address")
    if bad is None:
        key = LabRef("x", sid).key
        if key in seen:
            first, other = seen[key]
            clash = "" if other == sid else f" as {other!r}, which names the same lab"
            found.append(f"student id {sid!r} is already on line {first}{clash}")
        else:
            seen[key] = (line, sid)
    return found


def parse(text: str, source: str = "roster") -> list[Student]:
    """The students of a roster, or RosterError with every problem found."""
    problems: list[str] = []

    def problem(line: int, message: str) -> None:
        problems.append(f"{source}:{line}: {message}")

    rows = read_rows(text, problem)
    if not rows:
        raise RosterError(
            source, [f"{source}:1: empty roster: the header `id,name,email` is missing"]
        )
    header_line, header = rows[0]
    names = [h.strip().lower() for h in header]
    wrong = header_problem(names)
    if wrong:
        problem(header_line, wrong)
        raise RosterError(source, problems)
    if len(rows) - 1 > MAX_STUDENTS:
        problem(rows[MAX_STUDENTS + 1][0], f"more than {MAX_STUDENTS} students")
        raise RosterError(source, problems)

    students: list[Student] = []
    # lab key -> (line, id): ids that differ only in case or in '.', '_', '-' name one lab
    seen: dict[str, tuple[int, str]] = {}
    for line, row in rows[1:]:
        if len(row) != len(names):
            problem(line, f"{len(row)} field(s), expected {len(names)} ({','.join(names)})")
            continue
        cells = dict(zip(names, (c.strip() for c in row), strict=True))
        sid, name, email, key = cells["id"], cells["name"], cells["email"], cells.get("ssh_key", "")
        for message in student_problems(sid, name, email, line, seen):
            problem(line, message)
        bad_key = ssh_key_problem(key)
        if bad_key:
            problem(line, bad_key)
        students.append(Student(sid, name, email, line, key, cells.get("lxd_target", "")))
    if len(rows) == 1:
        problem(header_line, "the roster has a header but no student")
    if problems:
        raise RosterError(source, problems)
    return students
