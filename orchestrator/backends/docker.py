"""Docker backend: machines are containers; systemd runs as PID 1 without --privileged."""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

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
from orchestrator.images.rootfs import ensure_tarball
from orchestrator.paths import store_id

START_FIX = "start it: `systemctl start docker`, or `dockerd &` where systemd is not PID 1"
READY_TIMEOUT = 90.0
#: commands run under coreutils `timeout`; this much longer we stop waiting client-side
CLIENT_GRACE = 15.0


def image_ref(image: str) -> str:
    return f"guestlab/{image}:latest"


def container_name(lab: LabRef, machine: str) -> str:
    return f"gl-{lab.key}-{machine}"


def _network(lab: LabRef) -> str:
    return f"gl-{lab.key}"


def _lab_repo(lab: LabRef) -> str:
    return f"guestlab/lab-{lab.key}"


class DockerBackend:
    name = "docker"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "docker"

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._cgroup_version: str | None = None
        self._network_lock = threading.Lock()

    # -- engine ---------------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except DockerException as e:
                raise BackendUnavailable(
                    f"cannot reach the Docker engine ({_short(e)})", hint=START_FIX
                ) from None
            self._client = client
        return self._client

    def availability(self) -> Availability:
        try:
            version = self.client.version()
        except BackendUnavailable as e:
            return Availability(False, str(e), START_FIX)
        except DockerException as e:
            return Availability(False, f"the Docker engine failed: {_short(e)}", START_FIX)
        return Availability(True, f"Docker engine {version.get('Version', '?')}")

    def _engine_call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the SDK, turning a vanished engine into BackendUnavailable."""
        try:
            return fn(*args, **kwargs)
        except APIError:
            raise
        except DockerException as e:
            raise BackendUnavailable(
                f"{what}: the Docker engine stopped answering ({_short(e)})", hint=START_FIX
            ) from None
        except OSError as e:
            raise BackendUnavailable(
                f"{what}: lost the Docker engine ({e})", hint=START_FIX
            ) from None

    @property
    def cgroup_version(self) -> str:
        if self._cgroup_version is None:
            self._cgroup_version = str(self.client.info().get("CgroupVersion", "1"))
        return self._cgroup_version

    # -- images ---------------------------------------------------------------------------
    def has_image(self, image: str) -> bool:
        try:
            self.client.images.get(image_ref(image))
            return True
        except ImageNotFound:
            return False

    def ensure_image(
        self, image: str, progress: Progress, *, build: bool = True, mirror: str | None = None
    ) -> None:
        if self.has_image(image):
            return
        if not build:
            raise UsageError(
                f"the image `{image}` is not in the Docker engine",
                hint=f"build it: guestlab image build {image} --backend docker",
            )
        self.import_image(image, ensure_tarball(image, mirror=mirror, progress=progress), progress)

    def import_image(self, image: str, tarball: Any, progress: Progress) -> None:
        progress(f"importing {image} into Docker")
        repo, tag = image_ref(image).rsplit(":", 1)
        try:
            self.client.api.import_image(
                src=str(tarball),
                repository=repo,
                tag=tag,
                changes=[f"LABEL guestlab.image={image}", 'CMD ["/lib/systemd/systemd"]'],
            )
        except DockerException as e:
            raise ProvisioningError(f"importing {image} into Docker failed: {_short(e)}") from None
        if not self.has_image(image):
            raise ProvisioningError(f"Docker did not keep the imported image {image}")

    # -- machines -------------------------------------------------------------------------
    def _ensure_network(self, lab: LabRef) -> str:
        name = _network(lab)
        # machines of a lab are created in parallel threads: one of them makes the network
        with self._network_lock:
            self._create_network(lab, name)
        return name

    def _create_network(self, lab: LabRef, name: str) -> None:
        if not self.client.networks.list(names=[name]):
            # internal: the lab's machines reach each other and nothing beyond this host
            try:
                self.client.networks.create(
                    name, driver="bridge", internal=True, labels=lab.labels()
                )
            except DockerException as e:
                raise ProvisioningError(
                    f"creating the lab's network failed: {_short(e)}",
                    hint="with many labs, give Docker more address pools: `default-address-pools`"
                    " in /etc/docker/daemon.json (scripts/setup/docker.sh writes one)",
                ) from None

    def _run(self, spec: MachineSpec, image: str) -> None:
        kwargs: dict[str, Any] = dict(
            name=container_name(spec.lab, spec.name),
            hostname=spec.hostname or spec.name,
            labels=spec.labels,
            network=self._ensure_network(spec.lab),
            mem_limit=spec.memory,
            memswap_limit=spec.memory,
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            detach=True,
        )
        if spec.init == "systemd":
            kwargs.update(
                command=["/lib/systemd/systemd"],
                cap_add=["SYS_ADMIN"],
                tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
                environment={"container": "docker"},
                stop_signal="SIGRTMIN+3",
            )
            if self.cgroup_version == "2":
                kwargs.update(
                    cgroupns="host",
                    volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
                )
            else:
                # A private cgroup namespace, not the host's tree mounted in: the kernel then
                # refuses a v1 release_agent to root inside even with CAP_SYS_ADMIN, which
                # closes the classic cgroup escape; systemd boots the same.
                kwargs["cgroupns"] = "private"
        else:
            kwargs.update(command=["sleep", "infinity"], init=True)
        try:
            self.client.containers.run(image, **kwargs)
        except DockerException as e:
            raise ProvisioningError(f"starting machine {spec.name} failed: {_short(e)}") from None

    def _wait_ready(self, spec: MachineSpec, progress: Progress) -> None:
        if spec.init != "systemd":
            return
        progress(f"waiting for systemd in {spec.name}")
        deadline = time.monotonic() + READY_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            res = self.exec(spec.lab, spec.name, list(SYSTEMD_READY), timeout=10)
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.1)  # the bus is not up yet: --wait cannot wait for it
        raise ProvisioningError(
            f"systemd in {spec.name} did not finish booting in {READY_TIMEOUT:.0f} s"
            f" (state: {state or 'unknown'})"
        )

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        self._run(spec, image_ref(spec.image))
        self._wait_ready(spec, progress)

    def _container(self, lab: LabRef, machine: str) -> Any:
        try:
            c = self._engine_call(
                "finding " + machine, self.client.containers.get, container_name(lab, machine)
            )
        except NotFound:
            raise MachineUnavailable(f"machine {machine} does not exist") from None
        if c.status != "running":
            raise MachineUnavailable(f"machine {machine} is not running (it is {c.status})")
        return c

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        seconds = f"{max(timeout, 0.1):g}"
        wrapped = ["timeout", "--kill-after=2", seconds, *argv]
        box: dict[str, Any] = {}
        api = self.client.api

        def work() -> None:
            # straight to the exec API by name: three calls, no inspect of the container first
            try:
                exec_id = api.exec_create(container_name(lab, machine), wrapped, user="root")["Id"]
                output = api.exec_start(exec_id, demux=True)
                box["result"] = (api.exec_inspect(exec_id)["ExitCode"], output)
            except Exception as e:  # handed to the caller's thread below
                box["error"] = e

        started = time.monotonic()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(timeout + CLIENT_GRACE)
        if worker.is_alive():
            return ExecResult(124, "", f"no answer from the engine in {timeout:g} s", True)
        if "error" in box:
            err = box["error"]
            if isinstance(err, NotFound | APIError):
                self._container(lab, machine)  # says "does not exist" or "is not running"
                raise MachineUnavailable(f"machine {machine}: {_short(err)}") from None
            raise BackendUnavailable(f"exec in {machine} failed: {_short(err)}", hint=START_FIX)
        code, (out, errb) = box["result"]
        elapsed = time.monotonic() - started
        timed_out = code in (124, 137) and elapsed >= timeout
        return ExecResult(
            exit_code=code if code is not None else 255,
            stdout=(out or b"").decode("utf-8", "replace"),
            stderr=(errb or b"").decode("utf-8", "replace"),
            timed_out=timed_out,
        )

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        container = self._container(lab, machine)
        folder = posixpath.dirname(dest) or "/"
        self.exec(lab, machine, ["mkdir", "-p", folder], timeout=30)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(dest))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        # Docker resolves `folder` inside the container's root, so a symlink cannot lead out
        if not container.put_archive(folder, buf.getvalue()):
            raise ProvisioningError(f"copying {dest} into {machine} failed")

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        progress(f"copying {source.name} into {target.name}")
        image = self._commit(source, f"{target.name}-clone", labels=target.labels)
        self._run(target, image)
        self._wait_ready(target, progress)

    def _commit(self, spec: MachineSpec, tag: str, labels: dict[str, str]) -> str:
        container = self._container(spec.lab, spec.name)
        repo = _lab_repo(spec.lab)
        label_line = " ".join(f'{k}="{v}"' for k, v in labels.items())
        try:
            container.commit(repository=repo, tag=tag, changes=[f"LABEL {label_line}"])
        except DockerException as e:
            raise ProvisioningError(f"saving {spec.name} failed: {_short(e)}") from None
        return f"{repo}:{tag}"

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            self._commit(spec, f"{spec.name}-start", labels=spec.labels)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        for spec in machines:
            image = f"{_lab_repo(lab)}:{spec.name}-start"
            try:
                self.client.images.get(image)
            except ImageNotFound:
                raise ProvisioningError(
                    f"no starting state saved for {spec.name}",
                    hint=f"bring the lab down and up again: guestlab down {lab.scenario}",
                ) from None
            progress(f"restoring {spec.name}")
            with contextlib.suppress(NotFound):
                self.client.containers.get(container_name(lab, spec.name)).remove(
                    force=True, v=True
                )
            self._run(spec, image)
        for spec in machines:
            self._wait_ready(spec, progress)

    # -- cleanup --------------------------------------------------------------------------
    def _labelled(
        self, lab: LabRef | None, also: Sequence[str] = ()
    ) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        label = [f"{LABEL_LAB}={lab.key}"] if lab else [LABEL_LAB, f"{LABEL_STORE}={store_id()}"]
        flt = {"label": [*label, *also]}
        c = self.client
        return (
            c.containers.list(all=True, filters=flt),
            c.networks.list(filters=flt),
            c.images.list(filters=flt),
            c.volumes.list(filters=flt),
        )

    def destroy(self, lab: LabRef, *, also: Sequence[str] = ()) -> FoundResources:
        """Remove the lab's resources; `also`: labels they must carry too (Vagrant's docker
        provider removes only its own this way)."""
        found = FoundResources()
        containers, networks, images, volumes = self._engine_call(
            "listing the lab's resources", self._labelled, lab, also
        )
        # side by side: each removal is mostly the engine stopping a container's processes
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(containers)))) as pool:
            list(pool.map(lambda ct: _ignore_missing(ct.remove, force=True, v=True), containers))
        found.machines += [ct.labels.get(LABEL_MACHINE, ct.name) for ct in containers]
        for net in networks:
            _ignore_missing(net.remove)
            found.other.append(f"network {net.name}")
        # newest first: a clone's snapshot is a child of the image it was cloned from
        for img in sorted(images, key=lambda i: i.attrs.get("Created", ""), reverse=True):
            try:
                _ignore_missing(self.client.images.remove, img.id, force=True)
            except APIError as e:
                raise ProvisioningError(
                    f"removing image {img.short_id} failed: {_short(e)}"
                ) from None
            found.other.append(f"image {', '.join(img.tags) or img.short_id}")
        for vol in volumes:
            _ignore_missing(vol.remove, force=True)
            found.other.append(f"volume {vol.name}")
        return found

    def find(
        self, lab: LabRef | None = None, *, also: Sequence[str] = ()
    ) -> dict[str, FoundResources]:
        containers, networks, images, volumes = self._engine_call(
            "listing resources", self._labelled, lab, also
        )
        out: dict[str, FoundResources] = {}
        for ct in containers:
            key = ct.labels[LABEL_LAB]
            out.setdefault(key, FoundResources()).machines.append(
                ct.labels.get(LABEL_MACHINE, ct.name)
            )
        for kind, items in (("network", networks), ("image", images), ("volume", volumes)):
            for item in items:
                labels = (
                    item.attrs.get("Labels") or item.attrs.get("Config", {}).get("Labels") or {}
                )
                key = labels.get(LABEL_LAB)
                if key:
                    name = getattr(item, "name", None) or item.short_id
                    out.setdefault(key, FoundResources()).other.append(f"{kind} {name}")
        return out

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        self._container(lab, machine)
        return [
            "docker",
            "exec",
            "-it",
            "-e",
            "TERM",
            container_name(lab, machine),
            "/bin/bash",
            "-l",
        ]


def _ignore_missing(fn: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(NotFound):  # already gone: removal is idempotent
        fn(*args, **kwargs)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
