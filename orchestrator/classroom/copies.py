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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GuestlabError

if TYPE_CHECKING:
    from orchestrator.lab import Lab
    from orchestrator.scenario.model import Parameter

PROBE_TIMEOUT = 15.0
#: a parameter is a fingerprint only if two students share it by chance too rarely to matter
MIN_PARAM_BITS = 32
ALPHABET_BITS = {"hex": math.log2(16), "digits": math.log2(10), "word": math.log2(14 * 5) / 2}


@dataclass(frozen=True)
class StudentProbe:
    """A command whose output lines should be the student's own."""

    what: str  # e.g. "machine-id"
    machine: str
    argv: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.what} of {self.machine}"


def machine_ids(lab: Lab) -> list[StudentProbe]:
    return [StudentProbe("machine-id", s.name, ("cat", "/etc/machine-id")) for s in lab.specs]


def ssh_host_keys(lab: Lab) -> list[StudentProbe]:
    # only the key material (field 2): the comment holds the hostname, equal by design
    script = "cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null | awk '{print $2}'; exit 0"
    return [StudentProbe("ssh-host-key", s.name, ("sh", "-c", script)) for s in lab.specs]


PROBE_SOURCES: list[Callable[[Lab], list[StudentProbe]]] = [machine_ids, ssh_host_keys]


def probes_of(lab: Lab) -> list[StudentProbe]:
    return [p for source in PROBE_SOURCES for p in source(lab)]


def collect(lab: Lab) -> dict[str, list[str]]:
    """Run every per-student probe in the lab: probe label -> the values it printed.

    A probe that cannot run yields nothing: copy detection must never fail a check.
    """
    out: dict[str, list[str]] = {}
    for probe in probes_of(lab):
        try:
            res = lab.exec(lab.ref, probe.machine, probe.argv, timeout=PROBE_TIMEOUT)
        except GuestlabError:
            continue
        if res.ok:
            values = [_norm(line) for line in res.stdout.splitlines() if line.strip()]
            if values:
                out[probe.label] = values
    return out


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
    return value.strip().lower()


def shared(observations: Sequence[Observation]) -> dict[str, list[dict[str, Any]]]:
    """For each student who shares a value with others: what, and with whom.

    Each flag is {"what": label in this student's lab, "value": v,
    "with": [{"student": s, "what": label in theirs}, ...]}.
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
        if all(value in own[s] for s in holders):
            continue  # each had it from the start: an image's value, or a derived collision
        for student, labels in holders.items():
            others = [
                {"student": s, "what": ", ".join(dict.fromkeys(ls))}
                for s, ls in holders.items()
                if s != student
            ]
            flags.setdefault(student, []).append(
                {"what": ", ".join(dict.fromkeys(labels)), "value": value, "with": others}
            )
    return flags


def describe(flag: dict[str, Any]) -> str:
    """One line for a table cell: `machine-id of clone = alice's machine-id of template`."""
    others = "; ".join(f"{o['student']}'s {o['what']}" for o in flag["with"])
    return f"{flag['what']} = {others}"
