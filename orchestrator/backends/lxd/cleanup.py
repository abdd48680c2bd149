"""Removing an LXD instance for good: its snapshots, its recorded output, the instance."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pylxd import Client
    from pylxd.models import Instance


def drop_exec_logs(client: Client, name: str) -> list[str]:
    """Delete the recorded exec output LXD keeps for an instance (exec_*), through its
    API, so that a remote LXD's disk keeps nothing of it either; the files deleted."""
    logs = client.api.instances[name].logs
    gone: list[str] = []
    with suppress(Exception):  # an instance without logs, or one going away
        for url in logs.get().json()["metadata"] or []:
            file = url.rsplit("/", 1)[-1]
            if file.startswith("exec_"):
                with suppress(Exception):
                    logs[file].delete()
                    gone.append(file)
    return gone


def delete_instance(inst: Instance, attempts: int = 30) -> None:
    """Delete an instance with its snapshots, waiting out operations still under way.

    A guestlab killed while taking a snapshot leaves LXD finishing it on its own; until
    it has, LXD refuses to touch the instance ("busy running a create operation", "volume
    that has snapshots"). A cluster member that comes back starts the instances that ran
    when it was lost, maybe just after the stop here ("Instance is running"): stopped
    again.
    """
    from pylxd.exceptions import LXDAPIException, NotFound

    for attempt in range(attempts):
        try:
            inst.sync()
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            for snap in inst.snapshots.all():
                with suppress(NotFound):
                    snap.delete(wait=True)
            inst.delete(wait=True)
            return
        except LXDAPIException as exc:
            said = str(exc)
            transient = any(w in said for w in ("busy", "snapshot", "is running"))
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(1)
