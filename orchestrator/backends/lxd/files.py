"""Files in an LXD backend's machines: written through LXD's file API, read and staged
through the host's view of the machine's root when LXD runs on this host."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.backends import inroot
from orchestrator.backends.contract import FileProbe, LabRef
from orchestrator.backends.lxd.machines import api_errors, execute
from orchestrator.errors import GuestlabError, MachineUnavailable, ProvisioningError
from orchestrator.messages import _

if TYPE_CHECKING:
    from orchestrator.backends.lxd.connect import Connection
    from orchestrator.backends.lxd.placing import Sites


class LxdFiles:
    """The file half of LxdBackend, which gives it a connection and its instances' sites."""

    _sites: Sites
    _connection: Callable[[], Connection]

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        from pylxd.exceptions import LXDAPIException

        conn = self._connection()
        inst = self._sites.running(conn, lab, machine)
        try:
            inst.files.put(dest, data, mode=mode, uid=0, gid=0)
            return
        # most likely a missing parent directory: create it and try once more. LXD answers
        # a long upload to a missing directory before reading it all and closes the
        # connection: over HTTPS the client sees that as a connection error, not the 404
        except (LXDAPIException, OSError):
            pass
        parent = os.path.dirname(dest) or "/"
        made = execute(conn, inst, ["mkdir", "-p", parent], 10)
        if not made.ok:
            raise ProvisioningError(
                _("cannot create {parent} in {machine}: {stderr}").format(
                    parent=parent, machine=machine, stderr=made.stderr.strip()
                )
            )
        action = _("write {dest} in {name}").format(dest=dest, name=inst.name)
        with api_errors(action, cluster=conn.clustered):
            try:
                inst.files.put(dest, data, mode=mode, uid=0, gid=0)
            except OSError as exc:  # requests' connection errors
                raise ProvisioningError(
                    _("LXD could not {action}: {error}").format(action=action, error=exc)
                ) from exc

    def _init_pid(self, lab: LabRef, machine: str) -> int | None:
        """The host PID of the machine's init, when LXD runs on this host; else None."""
        conn = self._connection()
        if not conn.local:
            return None
        with api_errors(
            _("find the init of {machine}").format(machine=machine), cluster=conn.clustered
        ):
            pid = int(self._sites.running(conn, lab, machine).state().pid or 0)
        if pid <= 0:
            raise MachineUnavailable(
                _("machine `{machine}` of lab `{key}` has no init").format(
                    machine=machine, key=lab.key
                )
            )
        return pid

    def read_file(self, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe | None:
        # Through the host's view of the machine (openat2 inside its root), not LXD's file
        # API: that API calls a FIFO a file and a GET of one blocks the server for good.
        pid = self._init_pid(lab, machine)
        if pid is None:
            return None
        return inroot.read_machine(pid, machine, path, limit)

    def stage_tool(self, lab: LabRef, machine: str, name: str, data: bytes) -> str | None:
        pid = self._init_pid(lab, machine)
        if pid is None:
            return None
        return inroot.stage_machine(pid, machine, name, data)

    def unstage_tool(self, lab: LabRef, machine: str, path: str) -> None:
        try:
            pid = self._init_pid(lab, machine)
        except GuestlabError:
            return
        if pid is not None:
            inroot.unstage_in(pid, path)
