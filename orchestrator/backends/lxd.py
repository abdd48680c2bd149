"""LXD backend: system containers through pylxd.

Every instance is created with an explicit device set (a root disk and nothing else) and
no profile, so machines sit on no network and guestlab never touches the default profile.
The `user.guestlab.*` config keys are the labels `find` and `destroy` trust.

LXD system containers always boot the image's init: a machine whose spec says
`init: none` still runs systemd inside; guestlab only skips waiting for it to settle.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import math
import os
import platform
import re
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator import paths
from orchestrator.backends.base import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    SYSTEMD_READY,
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
    UsageError,
)

if TYPE_CHECKING:
    from pylxd import Client
    from pylxd.models import Instance

#: LXD config keys are free-form only under `user.`
CONFIG_PREFIX = "user."
SNAPSHOT = "guestlab-start"
OWN_POOL = "guestlab"  # made by scripts/setup/lxd.sh, preferred when present
READY_TIMEOUT = 60.0
START_FIX = (
    "start the LXD daemon: `lxd --group root >/var/log/lxd.log 2>&1 &` where PID 1 is not "
    "systemd, else `systemctl start snap.lxd.daemon` (snap) or `systemctl start lxd`"
)
INIT_FIX = "initialise LXD: `lxd init --auto` (or scripts/setup/lxd.sh for a dir pool, no network)"


def instance_name(lab: LabRef, machine: str) -> str:
    """A valid LXD name (<=63 chars, letter first, letters/digits/hyphens) for a machine.

    The hash keeps names of different labs apart; the readable part is only a courtesy
    to people running `lxc list`.
    """
    digest = hashlib.sha256(f"{lab.key}\0{machine}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    return f"gl-{digest}-{slug}"[:63].rstrip("-") if slug else f"gl-{digest}"


def image_alias(image: str) -> str:
    return f"guestlab/{image}"


def _config_labels(labels: dict[str, str]) -> dict[str, str]:
    return {CONFIG_PREFIX + key: value for key, value in labels.items()}


def _limits(spec: MachineSpec) -> dict[str, str]:
    return {
        "limits.memory": str(spec.memory),  # bytes: LXD takes a bare number as bytes
        "limits.cpu": str(max(1, math.ceil(spec.cpus))),  # a count of CPUs, not a share
        "limits.processes": str(spec.pids),
        # the backend promises "nested": containers (or LXD) inside the machine
        "security.nesting": "true",
    }


def _metadata_tarball(image: str, description: str, release: str) -> bytes:
    """The metadata half of a split LXD image: just metadata.yaml, no templates.

    Without templates LXD never rewrites /etc/hostname, so the hostname guestlab pushes
    is the one the machine boots with.
    """
    arch = platform.machine() or "x86_64"  # debootstrap built the rootfs for this host
    metadata = {
        "architecture": arch,
        "creation_date": int(time.time()),
        "properties": {
            "description": description,
            "os": "debian",  # the catalog builds Debian suites with debootstrap
            "release": release,
            "guestlab.image": image,
        },
    }
    body = yaml.safe_dump(metadata, sort_keys=False).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(body)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _shared_unix_adapter() -> Any:
    """pylxd's unix-socket adapter, with one connection pool per socket.

    pylxd keys its pools by whole URL, keeps 25 and closes the oldest, so with many
    threads (a class check) a pool can close under a request that is using it.
    """
    from urllib.parse import urlsplit

    from pylxd import client as pylxd_client

    class SharedUnixAdapter(pylxd_client._UnixAdapter):  # type: ignore[misc]
        def get_connection(self, url: str, proxies: Any = None) -> Any:
            key = urlsplit(url).netloc
            with self.pools.lock:
                conn = self.pools.get(key)
                if conn is None:
                    conn = pylxd_client._UnixSocketHTTPConnectionPool(url)
                    conn.pool.maxsize = 64  # type: ignore[attr-defined]
                    self.pools[key] = conn
            return conn

    return SharedUnixAdapter()


class LxdBackend:
    """Machines as LXD system containers."""

    name = "lxd"
    capabilities = frozenset({"systemd", "clone", "snapshot", "nested"})
    virtualization = "lxc"

    def __init__(self) -> None:
        self._conn: Client | None = None
        self._pool_name: str | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> str | None:
        """The storage pool machines go to, once availability() has been asked."""
        return self._pool_name

    # -- connection ------------------------------------------------------------------

    def _connect(self) -> Client:
        import pylxd  # lazy: the CLI must start without pylxd installed
        import requests
        from pylxd import client as pylxd_client

        endpoint = os.environ.get("GUESTLAB_LXD_ENDPOINT")
        # connect quickly, but let long operations (image import, /wait) take their time
        timeout = (10, 900)
        session = requests.Session()
        if not endpoint:
            session.mount("http+unix://", _shared_unix_adapter())
            return pylxd.Client(timeout=timeout, session=session)
        cert = os.environ.get("GUESTLAB_LXD_CERT")
        key = os.environ.get("GUESTLAB_LXD_KEY")
        verify_env = os.environ.get("GUESTLAB_LXD_VERIFY", "")
        verify: bool | str = True
        if verify_env.lower() in ("false", "0", "no"):
            verify = False
        elif verify_env:
            verify = verify_env
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would otherwise replace GUESTLAB_LXD_VERIFY
        session.trust_env = False
        session.cert = (cert, key) if cert and key else None
        session.verify = verify
        if isinstance(verify, str):
            session.mount(endpoint, pylxd_client.LXDSSLAdapter())  # pins the server's cert
        return pylxd.Client(endpoint=endpoint, timeout=timeout, session=session)

    def _client(self) -> Client:
        """The shared connection, or BackendUnavailable with the fix."""
        with self._lock:
            if self._conn is None:
                state = self.availability()
                if not state.usable:
                    raise BackendUnavailable(f"LXD: {state.detail}", hint=state.fix)
            assert self._conn is not None
            return self._conn

    def availability(self) -> Availability:
        try:
            import pylxd.exceptions
        except ImportError:
            return Availability(False, "pylxd is not installed", "pip install 'guestlab[lxd]'")
        try:
            client = self._connect()
        except pylxd.exceptions.ClientConnectionFailed as exc:
            where = os.environ.get("GUESTLAB_LXD_ENDPOINT") or "the local unix socket"
            reason = str(exc).strip() or "no answer"
            if "Permission denied" in reason:
                return Availability(
                    False,
                    f"no permission on LXD's socket ({where})",
                    "run as root or add your user to the `lxd` group",
                )
            if "SSL" in reason or "certificate" in reason.lower() or "ingerprint" in reason:
                return Availability(
                    False,
                    f"the TLS handshake with LXD at {where} failed: {reason}",
                    "check GUESTLAB_LXD_VERIFY (the server's certificate) and"
                    " GUESTLAB_LXD_CERT / GUESTLAB_LXD_KEY (a client certificate it trusts)",
                )
            return Availability(False, f"LXD does not answer on {where}: {reason}", START_FIX)
        except Exception as exc:  # availability never raises: say what went wrong instead
            return Availability(False, f"cannot reach LXD: {exc}", START_FIX)
        try:
            if client.host_info.get("auth") != "trusted":
                return Availability(
                    False,
                    "LXD does not trust this client's certificate",
                    "on the server: `lxc config trust add <cert>` (GUESTLAB_LXD_CERT)",
                )
            version = client.host_info.get("environment", {}).get("server_version", "?")
            pools = [p.name for p in client.storage_pools.all()]
            if not pools:
                return Availability(False, f"LXD {version} has no storage pool", INIT_FIX)
            pool = self._choose_pool(client, pools)
        except Exception as exc:
            return Availability(False, f"LXD answers but cannot be queried: {exc}", INIT_FIX)
        if pool is None:
            wanted = os.environ.get("GUESTLAB_LXD_POOL")
            if wanted:
                detail = f"storage pool `{wanted}` (GUESTLAB_LXD_POOL) does not exist"
                fix = f"set GUESTLAB_LXD_POOL to one of: {', '.join(pools)}"
            else:
                detail = "the default profile has no root disk and several pools exist"
                fix = f"set GUESTLAB_LXD_POOL to one of: {', '.join(pools)}"
            return Availability(False, detail, fix)
        if self._conn is None:  # other threads may be using the current client: keep it
            self._conn, self._pool_name = client, pool
        return Availability(True, f"LXD {version}, storage pool `{pool}`")

    @staticmethod
    def _choose_pool(client: Client, pools: list[str]) -> str | None:
        """$GUESTLAB_LXD_POOL, else a pool called `guestlab`, else the default profile's.

        The set-up script makes `guestlab` a copy-on-write (btrfs) pool where it can: on a
        `dir` pool every instance, copy and snapshot is an rsync of the whole root
        filesystem, seconds each, where btrfs takes a tenth of one (docs/performance.md).
        """
        wanted = os.environ.get("GUESTLAB_LXD_POOL")
        if wanted:
            return wanted if wanted in pools else None
        if OWN_POOL in pools:
            return OWN_POOL
        try:
            root = client.profiles.get("default").devices.get("root", {})
        except Exception:
            root = {}
        if root.get("pool") in pools:
            return str(root["pool"])
        return pools[0] if len(pools) == 1 else None

    # -- helpers -----------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn LXD's API errors into one-sentence ProvisioningErrors."""
        from pylxd.exceptions import LXDAPIException

        try:
            yield
        except LXDAPIException as exc:
            raise ProvisioningError(f"LXD could not {action}: {exc}") from exc

    def _instance(self, lab: LabRef, machine: str) -> Instance:
        from pylxd.exceptions import NotFound

        name = instance_name(lab, machine)
        try:
            return self._client().instances.get(name)
        except NotFound:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist (LXD instance {name})",
                hint="bring the lab up first: guestlab up",
            ) from None

    def _running(self, lab: LabRef, machine: str) -> Instance:
        inst = self._instance(lab, machine)
        if inst.status != "Running":
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` is {inst.status.lower()}",
                hint=f"start it: lxc start {inst.name}",
            )
        return inst

    def _labelled(self) -> list[Instance]:
        """Every instance carrying a guestlab lab label (one API call with config)."""
        instances = self._client().instances.all(recursion=1)
        return [i for i in instances if (i.config or {}).get(CONFIG_PREFIX + LABEL_LAB)]

    def _execute(self, inst: Instance, argv: Sequence[str], timeout: float) -> ExecResult:
        """Run argv with a deadline enforced inside (coreutils timeout) and outside.

        Not pylxd's `execute`: its websockets stay open while any process holds the
        command's stdout (`daemon &` would block it until that daemon exits) and it has no
        deadline. LXD's recorded-output exec ends with the command, and its operation
        /wait takes a timeout, so no thread is left waiting on a stuck machine.
        """
        from pylxd.exceptions import LXDAPIException

        limit = max(timeout, 0.1)
        wrapped = ["timeout", "--kill-after=2", f"{limit:.3f}", *argv]
        client = self._client()
        started = time.monotonic()
        try:
            response = client.api.instances[inst.name]["exec"].post(
                json={
                    "command": wrapped,
                    "environment": {},
                    "interactive": False,
                    "wait-for-websocket": False,
                    "record-output": True,
                }
            )
        except LXDAPIException as exc:
            if "not running" in str(exc).lower():
                raise MachineUnavailable(f"LXD instance {inst.name} is not running") from exc
            raise ProvisioningError(f"exec in LXD instance {inst.name} failed: {exc}") from exc
        operation = client.api.operations[response.json()["operation"].rsplit("/", 1)[-1]]
        # the in-machine kill comes at limit + 2 s; give LXD a little more before giving up
        deadline = started + limit + 5
        op: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wait = max(1, min(60, math.ceil(deadline - time.monotonic())))
            try:
                op = operation.wait.get(params={"timeout": wait}).json()["metadata"] or {}
            except LXDAPIException as exc:
                raise ProvisioningError(f"exec in LXD instance {inst.name} failed: {exc}") from exc
            if op.get("status") != "Running":
                break
        if op.get("status") != "Success":
            if op.get("status") in (None, "Running"):
                return ExecResult(124, "", f"no answer from LXD after {limit:g} s", timed_out=True)
            raise ProvisioningError(f"exec in LXD instance {inst.name} failed: {op.get('err')}")
        meta = op.get("metadata") or {}
        code = int(meta.get("return", -1))
        outputs = meta.get("output") or {}
        stdout, stderr = (self._take_output(outputs.get(fd)) for fd in ("1", "2"))
        # 124: timeout sent TERM; 137: it had to KILL. A command that merely exits 124
        # on its own before the deadline is not a time-out.
        timed_out = code in (124, 137) and time.monotonic() - started >= limit * 0.95
        return ExecResult(code, stdout, stderr, timed_out=timed_out)

    def _take_output(self, path: str | None) -> str:
        """Read and delete one recorded output file (/1.0/instances/<name>/logs/...)."""
        if not path:
            return ""
        node = self._client().api
        for segment in path.strip("/").split("/")[1:]:  # the API root already ends in /1.0
            node = node[segment]
        data = node.get(is_api=False).content
        with suppress(Exception):  # left over, the file only goes when the instance does
            node.delete()
        return data.decode("utf-8", "replace")

    def _wait_ready(self, inst: Instance, init: str, progress: Progress) -> None:
        """Block until the machine runs commands (init none) or systemd settled."""
        from pylxd.exceptions import LXDAPIException

        progress(f"waiting for {inst.name} to boot")
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if init == "none":
                    res = self._execute(inst, ["true"], 10)
                    if res.ok:
                        return
                    last = res.stderr.strip() or f"exit {res.exit_code}"
                else:
                    res = self._execute(inst, list(SYSTEMD_READY), 10)
                    last = res.stdout.strip() or res.stderr.strip() or last
                    if last in ("running", "degraded"):
                        return
                    # "offline" also means "PID 1 has not opened its socket yet": keep waiting
                    if last in ("maintenance", "stopping"):
                        break
            except MachineUnavailable:
                last = "the instance stopped"
                break
            except (LXDAPIException, ProvisioningError) as exc:
                last = str(exc)  # early in boot LXD may refuse exec: try again
            time.sleep(0.1)  # the bus is not up yet: --wait cannot wait for it
        raise ProvisioningError(
            f"LXD instance {inst.name} did not become ready (waited at most "
            f"{READY_TIMEOUT:g} s; last state: {last})",
            hint=f"look inside: lxc exec {inst.name} -- systemctl --failed",
        )

    def _set_hostname(self, inst: Instance, spec: MachineSpec) -> None:
        """LXD names the UTS namespace after the instance and the image says localhost.

        Done once the machine is up, not by pushing /etc/hostname before the first start:
        a file written into a never-started instance costs LXD about a second at that
        start and half a second at delete (measured), more than the whole exec here.
        """
        hostname = spec.hostname or spec.name
        script = 'printf "%s\\n" "$1" > /etc/hostname && hostname "$1"'
        res = self._execute(inst, ["sh", "-c", script, "sh", hostname], 10)
        if not res.ok:
            raise ProvisioningError(
                f"cannot set the hostname of {inst.name}: {res.stderr.strip() or res.exit_code}"
            )

    # -- images ------------------------------------------------------------------------

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        from orchestrator.images.catalog import lookup
        from orchestrator.images.rootfs import ensure_tarball

        client = self._client()
        alias = image_alias(image)
        if client.images.exists(alias, alias=True):
            return
        definition = lookup(image)
        if not build:
            raise UsageError(
                f"image `{image}` is not in LXD yet (alias {alias}): "
                f"build it with `guestlab image build {image} --backend lxd`",
                hint=f"guestlab image build {image} --backend lxd",
            )
        with open(paths.locks_dir() / f"lxd-image-{image}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two imports of one image wait for each other
            if client.images.exists(alias, alias=True):
                return
            tarball = ensure_tarball(image, progress=progress)
            progress(f"importing {tarball.name} into LXD as {alias}")
            meta = _metadata_tarball(image, definition.description, definition.suite)
            with self._errors(f"import image {alias}"), open(tarball, "rb") as rootfs:
                # a split image: LXD reads a plain (uncompressed) tar rootfs as well
                img = client.images.create(rootfs, metadata=meta, public=False, wait=True)
                try:
                    img.add_alias(alias, definition.description)
                except Exception:
                    img.delete(wait=True)  # no orphan image without its alias
                    raise

    # -- machines ----------------------------------------------------------------------

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        client = self._client()
        name = instance_name(spec.lab, spec.name)
        if client.instances.exists(name):
            raise ProvisioningError(
                f"machine `{spec.name}` of lab `{spec.lab.key}` already exists ({name})",
                hint="remove the lab first: guestlab down",
            )
        self.ensure_image(spec.image, progress, build=False)
        config = {
            "name": name,
            "description": f"guestlab {spec.lab.key} {spec.name}",
            "source": {"type": "image", "alias": image_alias(spec.image)},
            # no profile: its devices (a nic above all) are not ours to inherit
            "profiles": [],
            "devices": {"root": {"type": "disk", "path": "/", "pool": self._pool_name}},
            "config": {**_config_labels(spec.labels), **_limits(spec)},
        }
        progress(f"creating {name} from {image_alias(spec.image)}")
        with self._errors(f"create {name}"):
            inst = client.instances.create(config, wait=True)
            inst.start(wait=True)
        self._wait_ready(inst, spec.init, progress)
        self._set_hostname(inst, spec)

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        return self._execute(self._running(lab, machine), argv, timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        from pylxd.exceptions import LXDAPIException

        inst = self._running(lab, machine)
        try:
            inst.files.put(dest, data, mode=mode, uid=0, gid=0)
            return
        except LXDAPIException:
            pass  # most likely a missing parent directory: create it and try once more
        parent = os.path.dirname(dest) or "/"
        made = self._execute(inst, ["mkdir", "-p", parent], 10)
        if not made.ok:
            raise ProvisioningError(f"cannot create {parent} in {machine}: {made.stderr.strip()}")
        with self._errors(f"write {dest} in {inst.name}"):
            inst.files.put(dest, data, mode=mode, uid=0, gid=0)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        client = self._client()
        src = self._running(source.lab, source.name)
        name = instance_name(target.lab, target.name)
        if client.instances.exists(name):
            raise ProvisioningError(
                f"machine `{target.name}` of lab `{target.lab.key}` already exists ({name})",
                hint="remove the lab first: guestlab down",
            )
        config = {
            "name": name,
            "description": f"guestlab {target.lab.key} {target.name} (copy of {source.name})",
            # LXD 5.0 copies a running container without stopping it (a stateless copy),
            # file for file, /etc/machine-id included: what `lxc copy` users get
            "source": {"type": "copy", "source": src.name, "instance_only": True},
            "profiles": [],
            "devices": {"root": {"type": "disk", "path": "/", "pool": self._pool_name}},
            # given keys override the copied config: the target's own labels and limits
            "config": {**_config_labels(target.labels), **_limits(target)},
        }
        progress(f"copying {src.name} to {name}")
        with self._errors(f"copy {src.name} to {name}"):
            inst = client.instances.create(config, wait=True)
            inst.start(wait=True)
            src.sync()
            if src.status != "Running":  # should not happen, but the source must stay up
                src.start(wait=True)
        self._wait_ready(inst, target.init, progress)
        self._set_hostname(inst, target)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            inst = self._instance(lab, spec.name)
            with self._errors(f"snapshot {inst.name}"):
                # snapshots.all() gives name-only objects: .get() would warn about every
                # field newer LXD returns that pylxd does not know
                for snap in inst.snapshots.all():
                    if snap.name == SNAPSHOT:
                        snap.delete(wait=True)
                inst.snapshots.create(SNAPSHOT, stateful=False, wait=True)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        insts = [(self._instance(lab, spec.name), spec) for spec in machines]
        for inst, spec in insts:  # all of them checked before any is touched
            if SNAPSHOT not in {snap.name for snap in inst.snapshots.all()}:
                raise ProvisioningError(
                    f"machine `{spec.name}` of lab `{lab.key}` has no starting snapshot",
                    hint="bring the lab up again: guestlab down && guestlab up",
                )

        def one(inst: Instance, spec: MachineSpec) -> None:
            progress(f"restoring {inst.name}")
            with self._errors(f"restore {inst.name}"):
                # LXD would stop it itself; a forced stop is quicker than a clean shutdown
                # and the state is about to be thrown away anyway
                if inst.status == "Running":
                    inst.stop(force=True, wait=True)
                inst.restore_snapshot(SNAPSHOT, wait=True)
                inst.start(wait=True)
            self._wait_ready(inst, spec.init, progress)

        # side by side: each machine's stop, restore and boot is LXD waiting, not working
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(insts)))) as pool:
            list(pool.map(lambda pair: one(*pair), insts))

    def destroy(self, lab: LabRef) -> FoundResources:
        from pylxd.exceptions import LXDAPIException, NotFound

        found = FoundResources()
        for inst in self._labelled():
            if inst.config.get(CONFIG_PREFIX + LABEL_LAB) != lab.key:
                continue
            try:
                snaps = [f"{inst.name}/{s.name}" for s in inst.snapshots.all()]
                self._delete(inst)
            except NotFound:
                continue  # removed by someone else meanwhile: it is gone all the same
            except LXDAPIException as exc:
                raise ProvisioningError(f"LXD could not delete {inst.name}: {exc}") from exc
            found.machines.append(inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name))
            found.other.extend(snaps)
        return found

    @staticmethod
    def _delete(inst: Instance, attempts: int = 30) -> None:
        """Delete an instance with its snapshots, waiting out operations still under way.

        A guestlab killed while taking a snapshot leaves LXD finishing it on its own; until
        it has, LXD refuses to touch the instance ("busy running a create operation", "volume
        that has snapshots").
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
                transient = "busy" in str(exc) or "snapshot" in str(exc)
                if not transient or attempt == attempts - 1:
                    raise
                time.sleep(1)

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        out: dict[str, FoundResources] = {}
        mine = paths.store_id()
        for inst in self._labelled():
            key = inst.config[CONFIG_PREFIX + LABEL_LAB]
            if lab is not None and key != lab.key:
                continue
            if lab is None and inst.config.get(CONFIG_PREFIX + LABEL_STORE) != mine:
                continue  # another state store's lab: never ours to collect
            machine = inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name)
            out.setdefault(key, FoundResources()).machines.append(machine)
        return out

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return ["lxc", "exec", instance_name(lab, machine), "--", "bash", "-l"]
