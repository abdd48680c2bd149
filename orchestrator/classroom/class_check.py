"""`class check`: every student's lab checked at once, copies sought, the gradebook made."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator import lab as lifecycle
from orchestrator.classroom import copies
from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.store import ClassRecord, ClassStore, Member, StudentResult, lab_stats
from orchestrator.classroom.workers import (
    ClassProgress,
    Outcome,
    SilentProgress,
    failed,
    in_parallel,
)
from orchestrator.errors import LabBusy, MemberUnreachable, UsageError
from orchestrator.messages import N_, _
from orchestrator.scenario.load import load_file
from orchestrator.state import Store

#: the pauses before a lab that another command holds is asked for again; after the last
#: one it is reported busy, with who holds it
BUSY_PAUSES = (2.0, 5.0, 10.0)


def require_class(cstore: ClassStore, class_id: str) -> ClassRecord:
    klass = cstore.klass(class_id)
    if klass is None:
        known = ", ".join(c.id for c in cstore.classes()) or _("none")
        raise UsageError(
            _("no class {id} (classes: {known})").format(id=class_id, known=known),
            hint=_("bring one up: guestlab class up {id} --roster class.csv").format(id=class_id),
        )
    return klass


def check_one(
    db_path: Path, class_id: str, m: Member, *, reboot: bool = True
) -> tuple[StudentResult, Outcome]:
    """Check one student's lab and read its per-student values, on a connection of its own;
    without `reboot`, tasks that must survive one are reported unproven."""
    started = time.monotonic()
    own = Store(db_path)
    try:
        lab, record = lifecycle.open_lab(own, class_id, m.student)
        report = lifecycle.check(lab, record, own, reboot=reboot)
        try:  # bounded reads: a hostile lab costs its own copy entry, not its grade
            found = copies.gather(lab)
        except Exception as e:
            detail = failed(m.student, e, started).detail
            found = copies.Collected(
                problems=[copies.note(N_("copy detection failed: {error}"), error=detail)]
            )
        result = StudentResult(
            m.student,
            m.lab,
            report,
            probes=found.values,
            copy_problems=found.problems,
            params=dict(record.params),
        )
        detail = f"{report.score}/{report.max_score}"
        return result, Outcome(m.student, True, detail, time.monotonic() - started)
    except Exception as e:
        out = failed(m.student, e, started)
        if isinstance(e, MemberUnreachable):  # the lab is out of reach, not wrong
            out.detail = f"unreachable (member {e.member} offline): {out.detail}"
        return StudentResult(m.student, m.lab, error=out.detail), out
    finally:
        own.close()


def copy_flags(
    klass: ClassRecord, members: list[Member], results: dict[str, StudentResult]
) -> dict[str, list[dict[str, Any]]]:
    """Students who share a value that should be theirs alone, among the labs checked."""
    # the scenario's own file says which parameters are fingerprints
    fingerprints = copies.fingerprint_params(load_file(Path(klass.scenario_path)).parameters)
    observations = [
        copies.Observation(
            m.student,
            {k: v for k, v in results[m.student].params.items() if k in fingerprints},
            results[m.student].probes,
            m.baseline,
        )
        for m in members
        if results[m.student].report is not None
    ]
    return copies.shared(observations)


def check(
    store: Store,
    class_id: str,
    *,
    parallel: int = 8,
    progress: ClassProgress | None = None,
    reboot: bool = True,
) -> dict[str, Any]:
    """Check every student's lab concurrently; record and return the gradebook."""
    progress = progress or SilentProgress()
    cstore = ClassStore(store.db)
    klass = require_class(cstore, class_id)
    members = cstore.members(class_id)
    results: dict[str, StudentResult] = {}

    def one(m: Member) -> Outcome:
        for pause in BUSY_PAUSES:
            results[m.student], out = check_one(store.path, class_id, m, reboot=reboot)
            if not isinstance(out.error, LabBusy):
                return out
            # another command holds the lab for a moment (the student's own check from
            # their seat, a reset): ask again rather than leave the lab out of the book
            time.sleep(pause)
        results[m.student], out = check_one(store.path, class_id, m, reboot=reboot)
        return out

    at = time.time()
    for out in in_parallel(parallel, members, one):
        progress.finished(out.student, out.ok, out.detail)
    flags = copy_flags(klass, members, results)
    check_id = cstore.add_check(class_id, at, [results[m.student] for m in members])
    stats = lab_stats(store.db, [m.lab for m in members])
    rows = []
    for m in members:
        r = results[m.student]
        notes = [*flags.get(m.student, []), *copies.problem_flags(r.copy_problems)]
        rows.append(gb.row(m, klass.tasks, r.report, stats[m.lab], notes, r.error))
    book = gb.gradebook(class_id, klass.tasks, rows, at)
    cstore.set_gradebook(check_id, book)
    return book
