"""This host: `doctor` (which engines work) and `gc` (remove what nobody needs any more).

`gc` removes the resources of labs that the state store no longer knows, and whatever the
registered collectors say is due. A layer above the single lab (the classroom) adds its
own collector when its commands are registered, so this module never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.markup import escape

from orchestrator import backends
from orchestrator.cli import options
from orchestrator.cli.console import out
from orchestrator.cli.localized import command
from orchestrator.errors import GuestlabError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.state import Store

CONFINE_FIX = N_("scripts/setup.sh confines it (user namespaces); until then `up` refuses")
ORPHANS = N_("resources of labs the state store no longer knows (after a crash)")


@dataclass(frozen=True)
class Collector:
    """Something `guestlab gc` removes besides the labs nobody knows.

    `what` completes "Remove ..." in gc's help (marked with `N_` where it is written);
    `collect` removes what is due and returns a sentence per thing removed.
    """

    what: str
    collect: Callable[[Store], list[str]]


#: run by `gc` in the order added, before the labs nobody knows are looked for
COLLECTORS: list[Collector] = []


def add_collector(collector: Collector) -> None:
    """Have `guestlab gc` run `collector` too (once, however often it is added)."""
    if collector not in COLLECTORS:
        COLLECTORS.append(collector)


def gc_help() -> str:
    """gc's help in the current language: what each collector removes, then the labs
    nobody knows."""
    things = [_(c.what) for c in COLLECTORS]
    last = _(ORPHANS)
    what = _("{items}, and {last}").format(items=", ".join(things), last=last) if things else last
    return _("Remove {what}.").format(what=what)


@command(help_text=gc_help)
def gc() -> None:
    from orchestrator import teardown

    store = options.store()
    collected = [sentence for c in COLLECTORS for sentence in c.collect(store)]
    for sentence in collected:
        out.print(f"[green]✓[/] {escape(sentence)}")
    removed = teardown.gc(store)
    if not removed and not collected:
        out.print(_("Nothing to collect."))
    for name, labs in removed.items():
        for key, found in labs.items():
            removed_lab = _("{backend}: removed {lab} ({n} machine(s), {other} other)").format(
                backend=name, lab=key, n=len(found.machines), other=len(found.other)
            )
            out.print(f"[green]✓[/] {removed_lab}")


@command(help=N_("Say which backends work on this host, and how to fix the ones that do not."))
def doctor() -> None:
    from orchestrator import paths, views

    rows = [_diagnose(name) for name in backends.names()]
    out.print(views.doctor_table(rows))
    out.print(_("State and images: {folder}").format(folder=paths.home()))
    if not any(r[1] for r in rows):
        raise GuestlabError(_("no backend is usable on this host"), hint=_("follow a fix above"))


def _diagnose(name: str) -> tuple[str, bool, str, str]:
    """One row of `doctor`: the backend, whether it is usable, what was seen, the fix."""
    try:
        b = backends.get(name)
        a = b.availability()
        risk = b.host_root_risk() if a.usable else None
        if risk:
            detail = _("{detail}; UNSAFE: {risk}").format(detail=a.detail, risk=risk)
            return (name, True, detail, a.fix or _(CONFINE_FIX))
        return (name, a.usable, a.detail, a.fix)
    except GuestlabError as e:
        return (name, False, str(e), e.hint or "")
    except ImportError as e:
        return (
            name,
            False,
            _("its Python package is missing ({package})").format(package=e.name),
            f"pip install 'guestlab[{name}]'",
        )


#: the commands this module adds to `guestlab`
COMMANDS = (doctor, gc)
