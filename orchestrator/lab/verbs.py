"""The student's verbs on a lab that is up: check, hint, solve, reset."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.backends import require_available
from orchestrator.errors import MachineUnavailable, ProvisioningError, UsageError
from orchestrator.lab.bound import Lab
from orchestrator.lab.reporter import Reporter, Silent
from orchestrator.messages import N_, _, did_you_mean
from orchestrator.scenario.model import Task
from orchestrator.state import LabRecord, Store, lab_lock

if TYPE_CHECKING:
    from orchestrator.report import Report

#: the check a task fails when a machine it names did not come back from its reboot
REBOOT_CHECK = N_("the machine comes back from a reboot")
#: the check a task fails when a grading machine could not be made from the student's work
COPY_CHECK = N_("a new copy of the machine comes up")


def require_up(lab: Lab, record: LabRecord) -> None:
    if record.status != "up":
        raise ProvisioningError(
            _("lab {lab} is not ready (its `up` stopped at step {step})").format(
                lab=record.key, step=record.step or "?"
            ),
            hint=_("run `guestlab up {id}` again, or `guestlab down {id}`").format(
                id=lab.ref.scenario
            ),
        )


def select_tasks(lab: Lab, task_ids: Sequence[str]) -> list[Any]:
    known = {t.id: t for t in lab.scenario.tasks}
    unknown = [t for t in task_ids if t not in known]
    if unknown:
        raise UsageError(
            _("no task {tasks} in {lab}").format(tasks=", ".join(unknown), lab=lab.scenario.id),
            hint=did_you_mean(unknown[0], list(known), _("its tasks: {names}")),
        )
    return [known[t] for t in task_ids] if task_ids else list(known.values())


def check(
    lab: Lab,
    record: LabRecord,
    store: Store,
    task_ids: Sequence[str] = (),
    *,
    reboot: bool = True,
    reporter: Reporter | None = None,
) -> Report:
    """Grade the tasks; first reboot the machines `after_reboot` tasks name, unless
    `reboot` is false: those tasks are then reported unproven."""
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    # grading loads here: `hint` and `solve` open a lab without it (a faster start)
    from orchestrator import checks
    from orchestrator.lab import grading_machines
    from orchestrator.report import CheckResult, Report

    tasks = select_tasks(lab, task_ids)
    reporter = reporter or Silent()
    copies = grading_machines.named(lab, tasks)
    with grading_machines.made(lab, store, copies, reporter) as not_made:
        machines = [m for m in reboot_machines(tasks, lab) if m not in not_made]
        earlier, failed = {}, {}
        if reboot and machines:
            later = [t for t in tasks if t.after_reboot]
            earlier = checks.run_before(lab, lab.ref, later)
            failed = restart(lab, store, machines, reporter)
        results = checks.grade(lab, lab.ref, tasks, earlier=earlier)
    for task, result in zip(tasks, results, strict=True):
        result.unproven = task.after_reboot and not reboot
        why = [f"{m}: {failed[m]}" for m in task.machines if m in failed and task.after_reboot]
        if why:  # a machine that does not come back fails the task, with the reason
            result.checks.append(CheckResult(_(REBOOT_CHECK), False, "; ".join(why)[:500]))
        unmade = [not_made[m] for m in task.machines if m in not_made]
        if unmade:  # the student's work does not give a machine that boots
            result.checks.append(CheckResult(_(COPY_CHECK), False, "; ".join(unmade)[:500]))
    outcome = {r.id: r.passed for r in results}
    for task, result in zip(tasks, results, strict=True):
        result.first = [t for t in task.requires if t in outcome and not outcome[t]]
    rebooted = [m for m in machines if m not in failed] if reboot else []
    out = Report.now(lab.scenario.id, lab.ref.student, lab.backend.name, results, rebooted)
    store.add_attempt(lab.ref.key, out)
    return out


def reboot_machines(tasks: Sequence[Task], lab: Lab | None = None) -> list[str]:
    """The machines the `after_reboot` tasks' checks name, each once, in order; of a task
    that grades on grading machines, only those (the student's machines are only read)."""
    grading = {m.name for m in lab.grading} if lab is not None else set()
    names: list[str] = []
    for task in (t for t in tasks if t.after_reboot):
        own = [m for m in task.machines if m in grading]
        names += own or task.machines
    return list(dict.fromkeys(names))


def restart(lab: Lab, store: Store, machines: Sequence[str], reporter: Reporter) -> dict[str, str]:
    """Reboot the machines for real (each on its backend) and wait until they have booted;
    the machines that did not come back, each with why (grading goes on without them: a
    student who breaks the boot fails the task, the check itself does not break).

    Recorded before it starts, so that a shell the reboot ends can say why it ended.
    """
    failed: dict[str, str] = {}
    with lab_lock(lab.ref.key):
        store.event(lab.ref.key, "reboot", machines=list(machines))
        for name in machines:
            reporter.line(
                _("rebooting {machine} to prove the change survives").format(machine=name)
            )
        with contextlib.suppress(_NotAllBack), reporter.step("reboot"):
            specs = [lab.spec(name) for name in machines]
            for backend, group in lab.by_backend(specs):
                try:
                    backend.restart(lab.ref, group, reporter.line)
                except (MachineUnavailable, ProvisioningError) as exc:
                    failed.update({s.name: f"the reboot failed: {exc}" for s in group})
                    reporter.line(_("the reboot failed: {error}").format(error=exc))
            if failed:
                raise _NotAllBack  # the step is shown failed, not ticked
    return failed


class _NotAllBack(Exception):
    """A machine did not come back from the reboot (its task says why)."""


def reboots_since(store: Store, lab: Lab, machine: str, since: float) -> bool:
    """Whether guestlab rebooted `machine` of the lab at `since` or later."""
    return any(
        e["kind"] == "reboot" and e["at"] >= since and machine in e.get("machines", [])
        for e in store.events(lab.ref.key)
    )


def hint(lab: Lab, store: Store, task_id: str) -> tuple[int, int, str | None]:
    """(number of this hint, hints in all, its text); records that it was taken."""
    task = select_tasks(lab, [task_id])[0]
    if not task.hints:
        return 0, 0, None
    taken = store.hints_taken(lab.ref.key, task.id)
    idx = min(taken, len(task.hints) - 1)
    store.add_hint(lab.ref.key, task.id, idx)
    return idx + 1, len(task.hints), task.hints[idx]


def solve(lab: Lab, record: LabRecord, store: Store, task_ids: Sequence[str] = ()) -> list[str]:
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    done = []
    with lab_lock(lab.ref.key):
        for task in select_tasks(lab, task_ids):
            lab.run_steps(task.solution, f"solution of {task.id},")
            store.event(lab.ref.key, "solve", task=task.id)
            done.append(task.id)
    return done


def reset(lab: Lab, record: LabRecord, store: Store, reporter: Reporter) -> None:
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    first = saved_before_step(store, lab.ref.key)
    with lab_lock(lab.ref.key), reporter.step("restore"):
        if first is None:
            for backend, specs in lab.by_backend(lab.specs):
                backend.restore(lab.ref, specs, reporter.line)
        else:  # claimed from a pool: the student's steps and the clones follow the restore
            from orchestrator.lab.bring_up import restore_before  # it loads the YAML reader

            restore_before(lab, first, reporter)
        store.event(lab.ref.key, "reset")


def saved_before_step(store: Store, key: str) -> int | None:
    """The setup step before which the lab's starting state was saved (a pool's claim
    records it); None when it was saved after the whole `up`."""
    for event in store.events(key):
        if event["kind"] == "claim" and event.get("saved_before") is not None:
            return int(event["saved_before"])
    return None
