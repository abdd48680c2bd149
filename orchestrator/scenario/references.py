"""What the model cannot see alone: references between the parts of a scenario file.

Machine names and task ids are unique; every machine a clone, a step or a check names is
defined; clones form no loop; setup targets no clone; every `files[].src` stays inside
`labs/<id>/`; extra `disks` belong to virtual machines that nothing clones. The checks
read the file's plain data, whatever its shape, so that they run (and report) even when
the model found problems.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.messages import N_, _
from orchestrator.scenario.located import Loc, Report
from orchestrator.scenario.model import MULTI_MACHINE_FORMS, NAME
from orchestrator.scenario.params import has_template

Entries = list[tuple[int, dict[str, Any]]]


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """The mappings of a list, with their indexes; tolerant of any other shape."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def check_references(data: dict[str, Any], report: Report, labs_dir: Path | None) -> None:
    """Report every broken reference of the file's data; `labs_dir` None reads no disk."""
    machines = list(_items(data.get("machines")))
    duplicate = N_("duplicate machine name `{value}` (first at line {line})")
    names = _Machines(report, _first_of(machines, "machines", "name", duplicate, report))
    for i, machine in machines:
        parent, name = machine.get("clone_of"), machine.get("name")
        is_first = isinstance(name, str) and names.first.get(name) == i
        if names.known(("machines", i, "clone_of"), parent) and is_first:
            names.parent_of[name] = parent
    _check_clone_cycles(names.parent_of, names.first, report)
    names.grading = {
        m["name"]: i for i, m in machines if isinstance(m.get("name"), str) and "grading" in m
    }
    _check_grading(machines, names)
    for i, step in _items(data.get("setup")):
        loc: Loc = ("setup", i, "machine")
        name = step.get("machine")
        if names.known(loc, name) and name in names.parent_of:
            said = _(
                "setup runs before clones are taken, and `{name}` is a clone:"
                " run this step on `{root}`"
            )
            report.add(loc, said.format(name=name, root=names.root_of(name)), unless_reported=True)
    tasks = list(_items(data.get("tasks")))
    duplicate = N_("duplicate task id `{value}` (first at line {line})")
    _first_of(tasks, "tasks", "id", duplicate, report)
    earlier: list[str] = []
    for t, task in tasks:
        _check_task_machines(t, task, names)
        for r, needed in enumerate(task.get("requires") or []):
            if isinstance(needed, str) and needed not in earlier:
                said = (
                    _("`{task}` is no earlier task (earlier: {earlier})")
                    if earlier
                    else _("`{task}` is no earlier task (earlier: none)")
                )
                said = said.format(task=needed, earlier=", ".join(earlier))
                report.add(("tasks", t, "requires", r), said, unless_reported=True)
        if isinstance(task.get("id"), str):
            earlier.append(task["id"])
    _check_sources(data, machines, report, labs_dir)
    _check_disks(data, machines, names, report)


class _Machines:
    """The machines a file defines, and what its clones are copies of."""

    def __init__(self, report: Report, first: dict[str, int]) -> None:
        self.report = report
        self.first = first  # name -> index of the first machine so named
        self.parent_of: dict[str, str] = {}
        self.grading: dict[str, int] = {}  # grading machines: made by checks, not by `up`

    def workable(self, loc: Loc, name: Any, what: str) -> None:
        """Report `name` if it is a grading machine, which `what` (a msgid) cannot use."""
        if isinstance(name, str) and name in self.grading:
            said = _(
                "`{name}` is a grading machine, made by each check from a copy of"
                " `{source}`: {what} cannot use it"
            )
            source = self.parent_of.get(name, "?")
            self.report.add(
                loc, said.format(name=name, source=source, what=_(what)), unless_reported=True
            )

    def known(self, loc: Loc, name: Any) -> bool:
        """Report `name` unless it is a defined machine."""
        if not isinstance(name, str) or not self.first:
            return False
        if name in self.first:
            return True
        near = difflib.get_close_matches(name, list(self.first), n=1)
        said = (
            _("unknown machine `{name}`; did you mean `{near}`? (machines: {machines})")
            if near
            else _("unknown machine `{name}` (machines: {machines})")
        )
        machines = ", ".join(self.first)
        said = said.format(name=name, near=near[0] if near else "", machines=machines)
        self.report.add(loc, said, unless_reported=True)
        return False

    def root_of(self, name: str) -> str:
        seen = {name}
        while name in self.parent_of and self.parent_of[name] not in seen:
            name = self.parent_of[name]
            seen.add(name)
        return name


def _first_of(
    entries: Entries, section: str, field: str, duplicate: str, report: Report
) -> dict[str, int]:
    """The index of the first entry by its `field`; a later entry with the same is reported
    (`duplicate`: a msgid naming `{value}` and the `{line}` of the first)."""
    first: dict[str, int] = {}
    for i, entry in entries:
        value = entry.get(field)
        if not isinstance(value, str):
            continue
        if value in first:
            line = report.where((section, first[value], field))[0]
            said = _(duplicate).format(value=value, line=line)
            report.add((section, i, field), said, unless_reported=True)
        else:
            first[value] = i
    return first


def _check_task_machines(t: int, task: dict[str, Any], names: _Machines) -> None:
    """Every machine the task's checks and solution name is defined."""
    for c, check in _items(task.get("checks")):
        names.known(("tasks", t, "checks", c, "machine"), check.get("machine"))
        for form in MULTI_MACHINE_FORMS:
            multi = check.get(form)
            if isinstance(multi, dict) and isinstance(multi.get("machines"), list):
                for k, name in enumerate(multi["machines"]):
                    names.known(("tasks", t, "checks", c, form, "machines", k), name)
    for s, step in _items(task.get("solution")):
        loc: Loc = ("tasks", t, "solution", s, "machine")
        if names.known(loc, step.get("machine")):
            names.workable(loc, step.get("machine"), N_("a solution (the student's work)"))


def _check_grading(machines: Entries, names: _Machines) -> None:
    """Grading machines copy a lab machine, read their seeds from lab machines, and are
    copied by no other machine."""
    for i, machine in machines:
        parent = machine.get("clone_of")
        if parent in names.grading:
            copier = machine.get("name") in names.grading
            what = N_("another grading machine") if copier else N_("a clone made by `up`")
            names.workable(("machines", i, "clone_of"), parent, what)
        grading = machine.get("grading")
        seeds = grading.get("seed") if isinstance(grading, dict) else None
        for j, seed in _items(seeds):
            loc: Loc = ("machines", i, "grading", "seed", j, "machine")
            if names.known(loc, seed.get("machine")):
                names.workable(loc, seed.get("machine"), N_("a seed"))


def _check_sources(
    data: dict[str, Any], machines: Entries, report: Report, labs_dir: Path | None
) -> None:
    """Every `files[].src` is relative, stays inside labs/<id>/ and, given `labs_dir`, exists."""
    metadata = data.get("metadata")
    scenario_id = metadata.get("id") if isinstance(metadata, dict) else None
    if not (isinstance(scenario_id, str) and re.match(NAME, scenario_id)):
        scenario_id = None  # reported by the model; never joined into a path
    for i, machine in machines:
        for j, copy in _items(machine.get("files")):
            src = copy.get("src")
            if not isinstance(src, str) or not src:
                continue
            # A templated src is checked again once rendered, by source_path.
            check_dir = None if has_template(src) or scenario_id is None else labs_dir
            _, message = resolve_src(src, check_dir, scenario_id or "<id>")
            if message:
                report.add(("machines", i, "files", j, "src"), message, unless_reported=True)


def _check_disks(data: dict[str, Any], machines: Entries, names: _Machines, report: Report) -> None:
    """Extra disks only on VMs: a container has no block devices of its own to add, and a
    clone is made from a copy of its source's system disk alone."""
    backends = data.get("backends", ["docker"])
    containers = [b for b in backends if b != "vagrant"] if isinstance(backends, list) else []
    with_disks: dict[Any, int] = {}
    for i, machine in machines:
        if not machine.get("disks") or machine.get("clone_of") is not None:
            continue  # a clone's disks are the model's to report
        with_disks[machine.get("name")] = i
        if machine.get("kind") != "vm" and containers:
            said = _(
                "extra disks need a virtual machine, and this machine is a container on"
                " {backends}: set `kind: vm`, or list only the vagrant backend"
            )
            said = said.format(backends=", ".join(map(str, containers)))
            report.add(("machines", i, "disks"), said, unless_reported=True)
    for i, machine in machines:
        source = machine.get("clone_of")
        if isinstance(source, str) and source in with_disks and source in names.first:
            said = _(
                "`{source}` has extra `disks`, which a clone would not get (a clone copies"
                " its source's system disk only): clone a machine without `disks`"
            )
            report.add(
                ("machines", i, "clone_of"), said.format(source=source), unless_reported=True
            )


def _check_clone_cycles(parent_of: dict[str, str], first: dict[str, int], report: Report) -> None:
    done: set[str] = set()
    for start in parent_of:
        chain: list[str] = []
        name = start
        while name in parent_of and name not in chain and name not in done:
            chain.append(name)
            name = parent_of[name]
        done.update(chain)
        if name in chain:
            cycle = chain[chain.index(name) :]
            head = min(cycle, key=lambda n: first[n])
            at = cycle.index(head)
            ordered = [*cycle[at:], *cycle[:at], head]
            said = _("clone chain loops: {chain}").format(chain=" -> ".join(ordered))
            report.add(("machines", first[head], "clone_of"), said, unless_reported=True)


def resolve_src(src: str, labs_dir: Path | None, scenario_id: str) -> tuple[Path | None, str]:
    """The file `src` names and "" when it is fine, else a message; no disk access
    when `labs_dir` is None."""
    folder = f"labs/{scenario_id}/"
    if src.startswith(("/", "\\")) or Path(src).is_absolute():
        return None, _("must be a path relative to {folder}, not absolute").format(folder=folder)
    normal = posixpath.normpath(src)
    if normal == ".." or normal.startswith("../"):
        return None, _("leaves {folder} (through `..`)").format(folder=folder)
    if labs_dir is None:
        return None, ""
    root = labs_dir / scenario_id
    try:
        base = root.resolve()
        target = (root / src).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        return None, _("cannot be resolved: {error}").format(error=e)
    if not target.is_relative_to(base):
        return None, _("leaves {folder} (resolves to {target})").format(
            folder=folder, target=target
        )
    if not target.exists():
        return None, _("no such file: {path}").format(path=root / src)
    if not target.is_file():
        return None, _("not a regular file: {path}").format(path=root / src)
    return target, ""
