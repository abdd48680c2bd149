"""`guestlab pool ...`: labs made before their students come, claimed by `up` in a second.

`register` adds the group to `guestlab` and gives `guestlab gc` the pools' collector (labs
a killed filler left, labs past their pool's age limit).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from orchestrator import messages
from orchestrator.cli import localized, options
from orchestrator.cli.console import out
from orchestrator.cli.host import Collector, add_collector
from orchestrator.cli.localized import group
from orchestrator.errors import UsageError
from orchestrator.messages import N_, _

if TYPE_CHECKING:
    from orchestrator.state import Store

DEFAULT_SIZE = 2
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@group(
    "pool",
    help=N_("Keep labs ready before their students come: `up` and `class up` take one."),
    examples="""
        guestlab pool fill machine-id-clone --size 30 --max-age 8h
        guestlab pool status
        guestlab class up machine-id-clone --roster class.csv
        guestlab pool drain machine-id-clone
    """,
)
def pool_group() -> None:
    pass


def _collect(store: Store) -> list[str]:
    from orchestrator.pool import fill

    return fill.collect(store)


POOL_COLLECTOR = Collector(
    N_("pool labs a stopped `pool fill` left or past their age limit"), _collect
)


def register(root: click.Group) -> None:
    root.add_command(pool_group)
    add_collector(POOL_COLLECTOR)


def parse_age(text: str) -> float:
    """Seconds in `45m`, `8h`, `2d`."""
    text = text.strip()
    try:
        seconds = float(text[:-1]) * UNITS[text[-1]]
    except (ValueError, KeyError, IndexError):
        seconds = 0
    if seconds <= 0:
        raise UsageError(
            _("--max-age {value} is not a duration").format(value=repr(text)),
            hint=_("for example 45m, 8h, 2d"),
        )
    return seconds


@pool_group.command(
    "fill",
    help=N_(
        "Make labs until the pool holds SIZE ready ones (the pool's last size, else 2).\n\n"
        "Each lab gets its machines, its files and the setup steps before the first that"
        " uses `params` or `student`; the rest waits for the claim. Claims start this command"
        " (with --refill) in the background."
    ),
)
@click.argument("scenario", metavar="ID|PATH", shell_complete=options.complete_scenario)
@click.option(
    "--size", "-n", type=localized.IntRange(0, 500), metavar="N", help=N_("Labs to keep ready.")
)
@options.backend_option()
@click.option("--max-age", metavar="DURATION", help=N_("Replace a lab unclaimed this long (8h)."))
@click.option(
    "--memory", metavar="SIZE", help=N_("Memory limit of each lab, as `class up --memory`.")
)
@options.parallel_option(2, N_("Labs made at the same time."))
@click.option("--refill", is_flag=True, hidden=True, help=N_("Only refill a pool that exists."))
def fill_cmd(
    scenario: str,
    size: int | None,
    backend: str | None,
    max_age: str | None,
    memory: str | None,
    parallel: int,
    refill: bool,
) -> None:
    from orchestrator.lab import parse_size
    from orchestrator.pool import fill
    from orchestrator.pool.records import PoolStore

    store = options.store()
    given = fill.target_for(scenario, backend, 0, None, None)
    earlier = PoolStore(store.db).target(given.scenario, given.backend)
    if refill and earlier is None:  # drained since the claim: never bring it back
        out.print(
            _("Pool {id} on {backend} was drained: nothing to refill.").format(
                id=given.scenario, backend=given.backend
            )
        )
        return
    target = type(given)(
        given.scenario,
        given.backend,
        size if size is not None else (earlier.size if earlier else DEFAULT_SIZE),
        parse_age(max_age) if max_age else (earlier.max_age if earlier else None),
        parse_size(memory) if memory else (earlier.memory if earlier else None),
        given.scenario_path,
    )
    started = time.monotonic()
    done = fill.fill(target, store, lambda _key: _quiet(), parallel, record=not refill)
    if done.busy:
        out.print(
            _("Pool {id} on {backend} is being filled already.").format(
                id=target.scenario, backend=target.backend
            )
        )
        return
    for key in done.removed:
        replaced = _("replaced {lab} (left half-made, too old or stale)").format(lab=escape(key))
        out.print(f"[dim]{replaced}[/]")
    filled = _("pool {id} on {backend}: {size} ready ({made} made in {seconds} s)").format(
        id=escape(target.scenario),
        backend=target.backend,
        size=target.size,
        made=len(done.made),
        seconds=messages.decimal(time.monotonic() - started),
    )
    out.print(f"[green]✓[/] {filled}")


def _quiet() -> object:
    from orchestrator.lab import Silent

    return Silent()


@pool_group.command(
    "status", help=N_("Each pool: its size and how many labs are ready, claimed and being made.")
)
@click.argument("scenario", metavar="ID", required=False)
@options.format_option("table", "json")
def status_cmd(scenario: str | None, fmt: str) -> None:
    from orchestrator.pool.records import PoolStore

    store = options.store()
    pstore = PoolStore(store.db)
    pools = {(t.scenario, t.backend): t.size for t in pstore.targets(scenario)}
    for lab in pstore.labs(scenario):
        pools.setdefault((lab.scenario, lab.backend), 0)
    rows = []
    for (sc, be), size in sorted(pools.items()):
        labs = pstore.labs(sc, be)
        ready = sum(1 for lab in labs if lab.state == "ready")
        rows.append(
            {
                "scenario": sc,
                "backend": be,
                "size": size,
                "ready": ready,
                "claimed": pstore.claimed(sc, be),
                "filling": len(labs) - ready,
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        out.print(_("No pools. Fill one: guestlab pool fill ID --size N"))
    else:
        from rich.table import Table

        table = Table(title=_("Pools"), title_justify="left")
        headers = {
            "scenario": _("scenario"),
            "backend": _("backend"),
            "size": _("size"),
            "ready": _("ready"),
            "claimed": _("claimed"),
            "filling": _("filling"),
        }
        for col in rows[0]:
            justify = "left" if col in ("scenario", "backend") else "right"
            table.add_column(headers.get(col, col), justify=justify)
        for r in rows:
            table.add_row(*(escape(str(v)) for v in r.values()))
        out.print(table)


@pool_group.command(
    "drain", help=N_("Remove a pool's unclaimed labs and stop refilling it; students' labs stay.")
)
@click.argument("scenario", metavar="ID")
@options.backend_option(N_("Only the pool on this backend (default: every one)."))
def drain_cmd(scenario: str, backend: str | None) -> None:
    from orchestrator.pool import fill

    removed = fill.drain(options.store(), options.lab_id(scenario), backend)
    drained = _("pool {id} drained: {n} lab(s) removed").format(id=escape(scenario), n=len(removed))
    out.print(f"[green]✓[/] {drained}")


#: the commands this module adds to `guestlab`
COMMANDS = (pool_group,)
