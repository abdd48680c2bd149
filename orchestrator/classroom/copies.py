"""Copy detection: values that should be each student's own, compared across the class.

Two kinds of per-student values are compared:

- the scenario's random parameters (derived from the student id, so never shared by
  chance when they carry enough entropy);
- what the *per-student probes* read in each lab's machines (machine IDs, SSH host keys).
  `PROBE_SOURCES` is a list of functions from a lab to probes: a new kind of probe (one a
  scenario declares, say) is one more function there.

A value found in the labs of two students is flagged, unless every one of them already had
it when their lab came up (the `baseline`): machines made from one image share that image's
machine ID, which is nobody's doing.

Flags and notes are data (kept in the gradebook); `describe` says them in the reader's
language when they are shown. Labels (`machine-id of clone`, `parameter template_id`) are
kept in English in the records, and a note keeps its msgid and values beside its English
sentence.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator import textsafe
from orchestrator.errors import GuestlabError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.lab import Lab
    from orchestrator.scenario.model import Parameter

PROBE_TIMEOUT = 15.0
#: a parameter is a fingerprint only if two students share it by chance too rarely to matter
MIN_PARAM_BITS = 32
ALPHABET_BITS = {"hex": math.log2(16), "digits": math.log2(10), "word": math.log2(14 * 5) / 2}
#: the most of one file a probe reads: a machine ID is 33 bytes, an RSA-16384 public key 2.8 KiB
VALUE_LIMIT = 4096
#: the most files one probe reads (a glob a student can fill with thousands of names)
MAX_FILES = 16
#: how labels are written in the records, and how they read
PROBE_LABEL = re.compile(r"(?P<what>[\w-]+) of (?P<machine>[\w-]+)")
PARAMETER_LABEL = re.compile(r"parameter (?P<name>\w+)")


@dataclass(frozen=True)
class StudentProbe:
    """Files whose values should be the student's own: what, in which machine, which files.

    `column`: the value is that whitespace-separated field of each line (an SSH public key's
    second field is its key material; the third, a comment, holds the hostname, equal by
    design), or each whole line when None.
    """

    what: str  # e.g. "machine-id"
    machine: str
    pattern: str  # a path or a shell glob, no spaces
    column: int | None = None

    @property
    def label(self) -> str:
        """How the records name the probe (in English: `label_text` says it when shown)."""
        return f"{self.what} of {self.machine}"

    @property
    def argv(self) -> tuple[str, ...]:
        return ("sh", "-c", read_script(self.pattern), "sh")


def read_script(pattern: str) -> str:
    """A shell script printing, for each file `pattern` names, one framed line.

    Regular files are read with a bounded `head -c` (a 1 GB file costs nothing); anything
    else (a FIFO that never ends, a device) is named, never read. Paths and contents travel
    in base64, so no file name or content can break the framing.
    """
    return (
        "n=0; for f in " + pattern + "; do "
        '[ -e "$f" ] || [ -L "$f" ] || continue; '
        "n=$((n + 1)); "
        f'if [ "$n" -gt {MAX_FILES} ]; then echo more; break; fi; '
        'p=$(printf %s "$f" | base64 -w0); '
        'if [ -f "$f" ]; then '
        f'printf "file %s %s-\n" "$p" "$(head -c {VALUE_LIMIT + 1} -- "$f" | base64 -w0)"; '
        'else printf "other %s\n" "$p"; fi; '
        "done; exit 0"
    )


def machine_ids(lab: Lab) -> list[StudentProbe]:
    return [StudentProbe("machine-id", s.name, "/etc/machine-id") for s in lab.specs]


def ssh_host_keys(lab: Lab) -> list[StudentProbe]:
    pattern = "/etc/ssh/ssh_host_*_key.pub"
    return [StudentProbe("ssh-host-key", s.name, pattern, column=1) for s in lab.specs]


PROBE_SOURCES: list[Callable[[Lab], list[StudentProbe]]] = [machine_ids, ssh_host_keys]


def probes_of(lab: Lab) -> list[StudentProbe]:
    return [p for source in PROBE_SOURCES for p in source(lab)]


def note(msgid: str, **values: Any) -> dict[str, Any]:
    """Why something was not compared: the English sentence (for readers of the records),
    and its msgid and values, from which `describe` says it in the reader's language."""
    shown = {k: textsafe.clean(str(v)) for k, v in values.items()}
    return {"problem": textsafe.clean(msgid.format(**shown)), "says": msgid, "values": shown}


@dataclass
class Collected:
    """What the per-student probes read in one lab, and what they refused to compare."""

    values: dict[str, list[str]] = field(default_factory=dict)  # probe label -> values
    problems: list[dict[str, Any]] = field(default_factory=list)  # one `note` each


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def parse(probe: StudentProbe, stdout: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(values, problems) from what `read_script` printed."""
    values: list[str] = []
    problems: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        kind, _sep, rest = line.partition(" ")
        if kind == "more":
            problems.append(
                note(N_("{label}: more than {n} files"), label=probe.label, n=MAX_FILES)
            )
            continue
        path_b64, _sep, content_b64 = rest.partition(" ")
        try:
            if kind not in ("file", "other") or (kind == "file") != content_b64.endswith("-"):
                raise ValueError(line)
            path = textsafe.clean(_b64(path_b64).decode("utf-8", "replace"))
            raw = _b64(content_b64[:-1]) if kind == "file" else b""
        except (ValueError, binascii.Error):
            problems.append(
                note(N_("{label}: the probe printed something unreadable"), label=probe.label)
            )
            continue
        if kind != "file":
            problems.append(
                note(N_("{label}: {path} is not a regular file"), label=probe.label, path=path)
            )
        elif len(raw) > VALUE_LIMIT:
            problems.append(
                note(
                    N_("{label}: {path} is larger than {kib} KiB"),
                    label=probe.label,
                    path=path,
                    kib=VALUE_LIMIT // 1024,
                )
            )
        else:
            for text in raw.decode("utf-8", "replace").splitlines():
                parts = text.split()
                if probe.column is None:
                    value = text
                elif len(parts) > probe.column:
                    value = parts[probe.column]
                else:
                    continue
                if _norm(value):
                    values.append(_norm(value))
    return values, problems


def gather(lab: Lab) -> Collected:
    """Run every per-student probe in the lab; a probe that cannot run yields a sentence.

    Each read is bounded in size and time: a hostile machine costs this lab its copy
    detection, never the class its check.
    """
    out = Collected()
    for probe in probes_of(lab):
        try:
            res = lab.exec(lab.ref, probe.machine, probe.argv, timeout=PROBE_TIMEOUT)
        except GuestlabError as e:
            error = textsafe.cap(str(e), 200)
            out.problems.append(
                note(N_("{label} could not be read: {error}"), label=probe.label, error=error)
            )
            continue
        if res.timed_out:
            out.problems.append(
                note(
                    N_("{label} could not be read (no answer within {seconds} s)"),
                    label=probe.label,
                    seconds=f"{PROBE_TIMEOUT:g}",
                )
            )
            continue
        if res.truncated or res.exit_code != 0:
            out.problems.append(
                note(N_("{label} could not be read (it printed too much)"), label=probe.label)
                if res.truncated
                else note(
                    N_("{label} could not be read (exit {code})"),
                    label=probe.label,
                    code=res.exit_code,
                )
            )
            continue
        values, problems = parse(probe, res.stdout)
        out.problems.extend(problems)
        if values:
            out.values[probe.label] = values
    return out


def collect(lab: Lab) -> dict[str, list[str]]:
    """The values of `gather`: probe label -> the values it read (a lab's baseline)."""
    return gather(lab).values


def fingerprint_params(parameters: Mapping[str, Parameter]) -> list[str]:
    """The parameters random enough that two students sharing a value is no chance."""
    out = []
    for name, spec in parameters.items():
        if spec.random is None:  # `choices`: a handful of values, students share them
            continue
        if spec.length * ALPHABET_BITS[spec.random] >= MIN_PARAM_BITS:
            out.append(name)
    return out


@dataclass(frozen=True)
class Observation:
    """What one student's lab holds that should be theirs alone."""

    student: str
    params: dict[str, str]  # fingerprint parameters only: name -> value
    values: dict[str, list[str]]  # probe label -> values now
    baseline: dict[str, list[str]]  # probe label -> values right after `up`


def _norm(value: str) -> str:
    return textsafe.clean(value[: VALUE_LIMIT + 1]).strip().lower()


def shared(observations: Sequence[Observation]) -> dict[str, list[dict[str, Any]]]:
    """For each student whose lab holds a value that is not theirs: what, and whose it is.

    A value is a student's own when it is one of their parameters or was in their lab when
    it came up. When one student's lab holds a value that is another's own, only the one
    holding what is not theirs is flagged: a planted value frames nobody, since nobody can
    make a classmate's lab hold it. When no holder owns the value (two students reached it
    after `up`), every holder is flagged: who copied from whom cannot be told.

    Each flag is {"what": label in this student's lab, "value": v,
    "with": [{"student": s, "what": label in theirs, "own": whether it is theirs}, ...]}.
    """
    # value -> student -> labels where that student has it
    where: dict[str, dict[str, list[str]]] = {}
    own: dict[str, set[str]] = {}  # student -> values that are theirs by construction
    for ob in observations:
        mine = {_norm(v) for v in ob.params.values()}
        mine |= {_norm(v) for vs in ob.baseline.values() for v in vs}
        own[ob.student] = mine
        for name, value in ob.params.items():
            where.setdefault(_norm(value), {}).setdefault(ob.student, []).append(
                f"parameter {name}"
            )
        for label, values in ob.values.items():
            for value in values:
                where.setdefault(_norm(value), {}).setdefault(ob.student, []).append(label)
    flags: dict[str, list[dict[str, Any]]] = {}
    for value, holders in where.items():
        if len(holders) < 2 or not value:
            continue
        # each owner had it from the start: an image's value, or a derived collision
        for student, labels in holders.items():
            if value in own[student]:
                continue
            others = [
                {"student": s, "what": ", ".join(dict.fromkeys(ls)), "own": value in own[s]}
                for s, ls in holders.items()
                if s != student
            ]
            flags.setdefault(student, []).append(
                {"what": ", ".join(dict.fromkeys(labels)), "value": value, "with": others}
            )
    return flags


def problem_flags(problems: Sequence[dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Entries for a student's copy column saying what was not compared, and why (a `note`;
    a sentence alone from an older record)."""
    return [dict(p) if isinstance(p, dict) else {"problem": textsafe.clean(p)} for p in problems]


def label_text(labels: str) -> str:
    """Labels as the records write them (`machine-id of clone, parameter x`), in the
    reader's language."""

    def one(label: str) -> str:
        if found := PROBE_LABEL.fullmatch(label):
            return _("{what} of {machine}").format(**found.groupdict())
        if found := PARAMETER_LABEL.fullmatch(label):
            return _("parameter {name}").format(**found.groupdict())
        return label

    return ", ".join(one(label) for label in labels.split(", "))


def _noted(flag: dict[str, Any]) -> str:
    """A note's sentence in the reader's language (its English one if it has no msgid)."""
    if not isinstance(flag.get("says"), str) or not isinstance(flag.get("values"), dict):
        return str(flag["problem"])
    values = {k: label_text(v) if k == "label" else v for k, v in flag["values"].items()}
    try:
        return _(flag["says"]).format(**values)
    except (KeyError, IndexError, ValueError):  # a record from another version: as it was
        return str(flag["problem"])


def describe(flag: dict[str, Any]) -> str:
    """One line for a table cell, in the reader's language: whose value this student's lab
    holds, or why nothing was compared. `machine-id of clone holds ann's parameter
    template_id`; where no holder owns the value, `machine-id of clone = bob's machine-id of
    clone`."""
    if "problem" in flag:
        return _("not compared: {problem}").format(problem=_noted(flag))

    def whose(holders: list[dict[str, Any]]) -> str:
        return "; ".join(
            _("{student}'s {what}").format(student=o["student"], what=label_text(o["what"]))
            for o in holders
        )

    owners = [o for o in flag["with"] if o.get("own")]
    others = [o for o in flag["with"] if not o.get("own")]
    what = label_text(flag["what"])
    if not owners:
        return _("{what} = {others}").format(what=what, others=whose(others))
    if others:
        return _("{what} holds {owners} (also in {others})").format(
            what=what, owners=whose(owners), others=whose(others)
        )
    return _("{what} holds {owners}").format(what=what, owners=whose(owners))


def is_copy(flag: dict[str, Any]) -> bool:
    """Whether a copy-column entry is a flag (not a note of what was not compared)."""
    return "problem" not in flag
