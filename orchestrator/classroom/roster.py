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
from orchestrator.messages import _, ngettext

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
            ngettext(
                "{path}: {n} problem in the roster; nothing was provisioned",
                "{path}: {n} problems in the roster; nothing was provisioned",
                n,
            ).format(path=path, n=n),
            hint=_("fix every line listed above, then run the command again"),
        )


def student_id_problem(student: str) -> str | None:
    """Why `student` cannot be a student id, or None when it can."""
    if not STUDENT_ID.match(student):
        return _(
            "student id {student} must be 1-40 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        ).format(student=repr(student))
    return None


def load(path: Path) -> list[Student]:
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as e:
        raise UsageError(
            _("cannot read the roster {path}: {error}").format(path=path, error=e.strerror or e)
        ) from None
    if len(raw) > MAX_BYTES:
        raise RosterError(
            str(path),
            [_("{path}: the file is larger than {limit} bytes").format(path=path, limit=MAX_BYTES)],
        )
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets often save a byte-order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RosterError(
            str(path), [_("{path}:{line}: not UTF-8 text").format(path=path, line=line)]
        ) from None
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
        problem(last + 1, _("not valid CSV: {error}").format(error=e))
    return [(n, r) for n, r in rows if any(cell.strip() for cell in r)]


def header_problem(names: list[str]) -> str | None:
    """What is wrong with a header of these column names, if anything."""
    missing = [c for c in COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS + OPTIONAL]
    doubled = sorted({h for h in names if names.count(h) > 1})
    parts = []
    if missing:
        parts.append(_("missing column(s) {names}").format(names=", ".join(missing)))
    if unknown:
        parts.append(
            _("unknown column(s) {names}").format(names=", ".join(repr(u) for u in unknown))
        )
    if doubled:
        parts.append(_("column(s) given twice: {names}").format(names=", ".join(doubled)))
    if not parts:
        return None
    return _("the header must be `id,name,email` and may add {optional} ({problems})").format(
        optional=", ".join(f"`{c}`" for c in OPTIONAL), problems="; ".join(parts)
    )


def ssh_key_problem(text: str) -> str | None:
    """Why an `ssh_key` cell is not one public key, or None when it is (or is empty)."""
    if not text:
        return None
    # the cell itself is never repeated: it may be a private key pasted by mistake
    if not SSH_KEY_LINE.match(text):
        return _("ssh_key is not an OpenSSH public key line (`ssh-ed25519 AAAA... comment`)")
    import asyncssh  # here: `guestlab --help` and rosters without keys never load it

    try:
        asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as e:
        return _("ssh_key is not an OpenSSH public key line ({error})").format(error=e)
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
        found.append(_("the name is empty"))
    elif len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        found.append(
            _("the name must be at most {limit} printable characters").format(limit=MAX_NAME)
        )
    if email and not EMAIL.match(email):
        found.append(_("{email} is not an e-mail address").format(email=repr(email)))
    if bad is None:
        key = LabRef("x", sid).key
        if key in seen:
            first, other = seen[key]
            if other == sid:
                said = _("student id {student} is already on line {line}")
            else:
                said = _(
                    "student id {student} is already on line {line} as {other},"
                    " which names the same lab"
                )
            found.append(said.format(student=repr(sid), line=first, other=repr(other)))
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
            source,
            [
                _("{source}:1: empty roster: the header `id,name,email` is missing").format(
                    source=source
                )
            ],
        )
    header_line, header = rows[0]
    names = [h.strip().lower() for h in header]
    wrong = header_problem(names)
    if wrong:
        problem(header_line, wrong)
        raise RosterError(source, problems)
    if len(rows) - 1 > MAX_STUDENTS:
        problem(
            rows[MAX_STUDENTS + 1][0], _("more than {limit} students").format(limit=MAX_STUDENTS)
        )
        raise RosterError(source, problems)

    students: list[Student] = []
    # lab key -> (line, id): ids that differ only in case or in '.', '_', '-' name one lab
    seen: dict[str, tuple[int, str]] = {}
    for line, row in rows[1:]:
        if len(row) != len(names):
            said = _("{found} field(s), expected {wanted} ({names})")
            problem(line, said.format(found=len(row), wanted=len(names), names=",".join(names)))
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
        problem(header_line, _("the roster has a header but no student"))
    if problems:
        raise RosterError(source, problems)
    return students
