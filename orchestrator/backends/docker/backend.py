"""Docker backend: machines are containers in a user namespace, systemd as their PID 1;
archives, the host-side writer and btrfs quotas load where used (`hint` needs none)."""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.backends import firewall
from orchestrator.backends.common import (
    CONTAINER_BOOT_TIMEOUT,
    connect_or_raise,
    engine_error,
    engine_errors,
    short,
    wait_for_answer,
    wait_for_systemd,
)
from orchestrator.backends.contract import (
    SYSTEMD_READY,
    Availability,
    ExecResult,
    FileProbe,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.docker import cgroups, execution, sdk, seccomp
from orchestrator.backends.docker.confine import BOOT_FLAG, Confinement
from orchestrator.backends.docker.engine import (
    START_FIX,
    EngineFacts,
    connect,
    container_name,
    image_ref,
    lab_repo,
    network_name,
)
from orchestrator.backends.docker.images import DockerImages
from orchestrator.backends.docker.resources import Resources
from orchestrator.errors import (
    BackendUnavailable,
    GuestlabError,
    MachineUnavailable,
    ProvisioningError,
)
from orchestrator.messages import _, speaking

if TYPE_CHECKING:
    import docker

READY_TIMEOUT = CONTAINER_BOOT_TIMEOUT
#: seconds systemd has to power off on `docker restart` before the engine kills it
RESTART_GRACE = 20
#: the host stops waiting this much after a command's own timeout
CLIENT_GRACE = 15.0


class DockerBackend(DockerImages):
    name = "docker"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "docker"

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._facts: EngineFacts | None = None
        self._network_lock = threading.Lock()

    # -- engine ---------------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect_or_raise(
                _("the Docker engine"), connect, sdk.errors.DockerException, _(START_FIX)
            )
        return self._client

    @property
    def facts(self) -> EngineFacts:
        if self._facts is None:
            self._facts = EngineFacts.read(self.client.info())
        return self._facts

    @property
    def cgroup_version(self) -> str:
        return self.facts.cgroup_version

    @property
    def resources(self) -> Resources:
        return Resources(self.client)

    def availability(self) -> Availability:
        try:
            version = self.client.version()
            facts = self.facts
        except BackendUnavailable as e:
            return Availability(False, str(e), _(START_FIX))
        except sdk.errors.DockerException as e:
            return Availability(
                False, _("the Docker engine failed: {error}").format(error=short(e)), _(START_FIX)
            )
        return Availability(
            True,
            _("Docker engine {version}, {facts}").format(
                version=version.get("Version", "?"), facts=facts
            ),
        )

    def host_root_risk(self) -> str | None:
        return self.facts.host_root_risk()

    # -- machines -------------------------------------------------------------------------
    def ensure_network(self, lab: LabRef, labels: dict[str, str], name: str | None = None) -> str:
        """The lab's internal network, on a bridge the host firewall keeps to itself."""
        name = name or network_name(lab)
        firewall.ensure_host_drop()
        # machines of a lab are created in parallel threads: one of them makes the network
        with self._network_lock:
            self.resources.create_network(name, labels)
        return name

    def confinement(self, spec: MachineSpec, network: str, labels: dict[str, str]) -> Confinement:
        disk = spec.disk if self.facts.bounds_disk else None
        return Confinement(spec, network, labels, disk, seccomp.installed())

    def _run(self, spec: MachineSpec, image: str) -> None:
        conf = self.confinement(spec, self.ensure_network(spec.lab, spec.lab.labels()), spec.labels)
        if conf.disk is not None and self.facts.data_root:
            from orchestrator.backends import btrfs_quota

            btrfs_quota.heal(Path(self.facts.data_root))  # or the bound would not hold
        with engine_errors(
            _("starting machine {name}").format(name=spec.name), sdk.errors.DockerException
        ):
            self.client.containers.run(
                image, name=container_name(spec.lab, spec.name), **conf.sdk_kwargs()
            )
        if conf.systemd:
            self.release_boot(spec.lab, spec.name)

    def release_boot(self, lab: LabRef, machine: str) -> None:
        """Hand the machine its cgroups, then let its first process become systemd."""
        name = container_name(lab, machine)
        with engine_errors(
            _("preparing {machine} for systemd").format(machine=machine),
            (sdk.errors.DockerException, OSError, ValueError),
        ):
            pid = int(self.client.api.inspect_container(name)["State"]["Pid"])
            cgroups.delegate(pid)
        res = self.exec(lab, machine, ["touch", BOOT_FLAG], timeout=30)
        if not res.ok:
            raise ProvisioningError(
                _("starting systemd in {machine} failed: {stderr}").format(
                    machine=machine, stderr=res.stderr[:300]
                )
            )

    def wait_ready(self, lab: LabRef, machine: str, init: str, progress: Progress) -> None:
        """Until systemd settled, or for `init: none` until a command answers."""
        what = f"machine `{machine}` of lab `{lab.key}`"
        hint = f"look inside: docker exec {container_name(lab, machine)} systemctl --failed"
        if init != "systemd":
            wait_for_answer(what, lambda t: self._answers(lab, machine, t), timeout=READY_TIMEOUT)
            return
        progress(_("waiting for systemd in {machine}").format(machine=machine))

        def state(t: float) -> str:
            res = self.exec(lab, machine, list(SYSTEMD_READY), timeout=t)
            return res.stdout.strip() or ("no answer" if res.timed_out else res.stderr[:200])

        wait_for_systemd(what, state, timeout=READY_TIMEOUT, hint=hint)

    def _answers(self, lab: LabRef, machine: str, timeout: float) -> str | None:
        res = self.exec(lab, machine, ["true"], timeout=timeout)
        return None if res.ok else (res.stderr.strip()[:200] or f"exit {res.exit_code}")

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        self._run(spec, image_ref(spec.image))
        self.wait_ready(spec.lab, spec.name, spec.init, progress)

    def container(self, lab: LabRef, machine: str) -> Any:
        """The running container of a machine, or MachineUnavailable."""
        try:
            c = self.resources.call(
                "finding " + machine, self.client.containers.get, container_name(lab, machine)
            )
        except sdk.errors.NotFound:
            raise MachineUnavailable(
                _("machine {machine} does not exist").format(machine=machine)
            ) from None
        if c.status != "running":
            raise MachineUnavailable(
                _("machine {machine} is not running (it is {status})").format(
                    machine=machine, status=c.status
                )
            )
        return c

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = execution.run(
                    self.client.api, container_name(lab, machine), argv, timeout=timeout
                )
            except Exception as e:  # handed to the caller's thread below
                box["error"] = e

        worker = threading.Thread(target=speaking(work), daemon=True)
        worker.start()
        worker.join(timeout + CLIENT_GRACE)
        if worker.is_alive():
            return ExecResult(
                124,
                "",
                _("no answer from the engine in {timeout} s").format(timeout=format(timeout, "g")),
                True,
            )
        if "error" in box:
            err = box["error"]
            if isinstance(err, sdk.errors.NotFound | sdk.errors.APIError):
                self.container(lab, machine)  # says "does not exist" or "is not running"
                raise MachineUnavailable(
                    _("machine {machine}: {error}").format(machine=machine, error=short(err))
                ) from None
            raise engine_error(
                err,
                _("exec in {machine}").format(machine=machine),
                kind=BackendUnavailable,
                hint=_(START_FIX),
            )
        result: ExecResult = box["result"]
        return result

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        from orchestrator.backends.docker import files

        container = self.container(lab, machine)
        folder = posixpath.dirname(dest) or "/"
        self.exec(lab, machine, ["mkdir", "-p", folder], timeout=30)
        archive = files.file_archive(posixpath.basename(dest), data, mode)
        # Docker resolves `folder` inside the container's root, so a symlink cannot lead out
        if not container.put_archive(folder, archive):
            raise ProvisioningError(
                _("copying {dest} into {machine} failed").format(dest=dest, machine=machine)
            )

    def read_file(self, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe:
        from orchestrator.backends.docker import files

        # the archive API reads a stopped container's disk too: a check of a machine that
        # is not running must say so, as an exec in it does
        self.container(lab, machine)
        try:
            got = files.read_file(self.client.api, container_name(lab, machine), path, limit)
            return files.shifted(got, files.uid_base(self.facts.userns, self.facts.data_root))
        # requests' errors are OSErrors
        except (sdk.errors.DockerException, OSError, files.TarError) as e:
            raise engine_error(
                e,
                _("reading {path} in {machine}").format(path=path, machine=machine),
                kind=BackendUnavailable,
            ) from None

    def _local_pid(self, lab: LabRef, machine: str) -> int | None:
        """The host PID of the machine's init when the engine runs on this host."""
        if not self.client.api.base_url.startswith("http+docker://"):
            return None  # a remote engine (DOCKER_HOST over TCP): its PIDs are not ours
        pid = int(self.container(lab, machine).attrs.get("State", {}).get("Pid") or 0)
        return pid or None

    def stage_tool(self, lab: LabRef, machine: str, name: str, data: bytes) -> str:
        # At the root, not in /run: Docker's tmpfs mounts are noexec. Written by the host
        # through the init's root (openat2 inside it) where it can: ten times faster than a
        # tar through the engine, and owned by a uid the machine does not map, so root in it
        # cannot change the tool; else through the archive API.
        from orchestrator.backends import inroot
        from orchestrator.backends.docker import files

        pid = self._local_pid(lab, machine)
        if pid is not None:
            try:
                return inroot.stage_in(pid, name, data)
            except OSError:
                pass  # the init ended meanwhile: the engine says what is wrong below
        folder, archive = files.tool_archive(name, data)
        if not self.container(lab, machine).put_archive("/", archive):
            raise ProvisioningError(
                _("copying {name} into {machine} failed").format(name=name, machine=machine)
            )
        return f"/{folder}/{name}"

    def unstage_tool(self, lab: LabRef, machine: str, path: str) -> None:
        """A host-written tool is removed by the host; one the engine wrote, by the batch."""
        from orchestrator.backends import inroot

        with contextlib.suppress(GuestlabError):
            pid = self._local_pid(lab, machine)
            if pid is not None:
                inroot.unstage_in(pid, path)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        progress(_("copying {source} into {target}").format(source=source.name, target=target.name))
        image = self.commit(source, f"{target.name}-clone", labels=target.labels)
        self._run(target, image)
        self.wait_ready(target.lab, target.name, target.init, progress)

    def clone_start(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        """A new machine from `source`'s starting state (the image `snapshot` committed)."""
        image = self._start_image(source.lab, source.name)
        progress(
            _("copying {source} as it started into {target}").format(
                source=source.name, target=target.name
            )
        )
        self._run(target, image)
        self.wait_ready(target.lab, target.name, target.init, progress)

    def _start_image(self, lab: LabRef, machine: str) -> str:
        image = f"{lab_repo(lab)}:{machine}-start"
        if not self.resources.has_image(image):
            raise ProvisioningError(
                _("no starting state saved for {machine}").format(machine=machine),
                hint=_("bring the lab down and up again: guestlab down {scenario}").format(
                    scenario=lab.scenario
                ),
            )
        return image

    def commit(
        self, spec: MachineSpec, tag: str, labels: dict[str, str], *, repo: str | None = None
    ) -> str:
        """The machine's file system as an image in the lab's repository (or `repo`: Vagrant's
        docker provider keeps its own); the image's reference."""
        container = self.container(spec.lab, spec.name)
        repo = repo or lab_repo(spec.lab)
        label_line = " ".join(f'{k}="{v}"' for k, v in labels.items())
        with engine_errors(_("saving {name}").format(name=spec.name), sdk.errors.DockerException):
            container.commit(repository=repo, tag=tag, changes=[f"LABEL {label_line}"])
        return f"{repo}:{tag}"

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            self.commit(spec, f"{spec.name}-start", labels=spec.labels)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        for spec in machines:
            image = self._start_image(lab, spec.name)
            progress(_("restoring {name}").format(name=spec.name))
            self.resources.remove_container(container_name(lab, spec.name))
            self._run(spec, image)
        for spec in machines:
            self.wait_ready(spec.lab, spec.name, spec.init, progress)

    def remove_machine(self, lab: LabRef, machine: str) -> None:
        self.resources.remove_container(container_name(lab, machine))

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        """`docker restart`: systemd powers off on its stop signal, every process ends, the
        container starts again with fresh tmpfs on /run and /tmp, its disk kept; then, as
        at creation, its cgroups are handed over and systemd let go."""
        for spec in machines:
            name = container_name(lab, spec.name)
            self.container(lab, spec.name)  # MachineUnavailable when it is not running
            progress(_("restarting {name}").format(name=spec.name))
            with engine_errors(
                _("restarting machine {name}").format(name=spec.name), sdk.errors.DockerException
            ):
                self.client.api.restart(name, timeout=RESTART_GRACE)
            if spec.init == "systemd":
                self.release_boot(lab, spec.name)
        for spec in machines:
            self.wait_ready(lab, spec.name, spec.init, progress)

    # -- cleanup --------------------------------------------------------------------------
    def destroy(self, lab: LabRef, *, also: Sequence[str] = ()) -> FoundResources:
        """Remove the lab's resources that also carry the labels `also` (Vagrant's)."""
        return self.resources.destroy(lab, also)

    def find(
        self, lab: LabRef | None = None, *, also: Sequence[str] = ()
    ) -> dict[str, FoundResources]:
        return self.resources.find(lab, also)

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        self.container(lab, machine)
        name = container_name(lab, machine)
        return ["docker", "exec", "-it", "-e", "TERM", name, "/bin/bash", "-l"]

    def attach_argv(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool
    ) -> list[str]:
        self.container(lab, machine)
        return ["docker", "exec", "-it" if tty else "-i", container_name(lab, machine), *argv]
