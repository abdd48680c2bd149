"""Probes a student cannot fool: the trusted shell, engine file reads, tamper checks.

Root in a machine owns its `sh`, `cat`, `stat`, `systemctl` and `/etc/ld.so.preload`. So
for each check run, per machine:

- `file` probes are answered by the engine itself when the backend is a `FileReader`
  (Docker's archive API, LXD's file API, the host's view of an nspawn machine);
- every other probe runs in one batch under the host's statically linked busybox, copied
  into the machine at a fresh random path for this run and removed after, started by the
  engine directly (no machine binary, no dynamic loader) as `busybox env -i PATH=...
  busybox sh -c ...`: a clean environment, a fixed PATH, the busybox applets first;
- the same batch hashes every machine binary the checks name (tamper.py), and the host
  compares them with the image's manifest: a check that would run a changed binary fails
  with "tampered: PATH differs from the image".
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.backends.contract import (
    ExecResult,
    Executor,
    FileReader,
    ImageManifests,
    LabRef,
    ToolStager,
)
from orchestrator.checks import kernel_views, tamper
from orchestrator.checks.batch import BATCH_SIZE, execute_batch
from orchestrator.checks.engine_mounts import EngineMount
from orchestrator.checks.form import Outcome, Probe, Tampered, Unreachable, sh
from orchestrator.checks.reads import read_probe
from orchestrator.errors import GuestlabError, MemberUnreachable, ProvisioningError
from orchestrator.images import manifest as manifests
from orchestrator.images.manifest import Manifest
from orchestrator.messages import _, speaking

#: Debian's busybox-static (scripts/setup/seat.sh installs it)
BUSYBOX = Path(os.environ.get("GUESTLAB_BUSYBOX", "/bin/busybox"))
TOOL_NAME = "busybox"
#: a check run's probes per batch: one place is kept for the tamper probe
PROBES_PER_BATCH = BATCH_SIZE - 1
#: kernel and memory file systems an engine's file API does not see (Docker's archive
#: reads the container's disk): files there are read by the trusted shell instead
VOLATILE = ("/proc/", "/sys/", "/dev/", "/run/", "/tmp/")


@functools.cache
def busybox() -> bytes:
    """The trusted tool's bytes; it must be statically linked, or it would trust the machine."""
    try:
        data = BUSYBOX.read_bytes()
    except OSError as e:
        raise ProvisioningError(
            _("the trusted probe shell {busybox} cannot be read ({strerror})").format(
                busybox=BUSYBOX, strerror=e.strerror
            ),
            hint=_("install Debian's busybox-static (scripts/setup/seat.sh does)"),
        ) from None
    if b"/ld-linux" in data[:4096] or data[:4] != b"\x7fELF":
        raise ProvisioningError(
            _("{busybox} is not a statically linked program").format(busybox=BUSYBOX),
            hint=_("install Debian's busybox-static, not busybox"),
        )
    return data


@functools.cache
def applets() -> frozenset[str]:
    """The names the trusted shell runs as its own applets, never as machine files."""
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=False)
    return frozenset(out.stdout.split())


@dataclass(frozen=True)
class TrustedShell:
    """An Executor that runs `sh ...` argv under the staged busybox, clean and with a fixed
    PATH; a batch's own fallback (one probe at a time) goes through it too."""

    backend: Any
    tool: str

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        path = "PATH=" + ":".join(tamper.SAFE_PATH)
        wrapped = [self.tool, "env", "-i", path, "HOME=/root", "LC_ALL=C", self.tool, *argv]
        result: ExecResult = self.backend.exec(lab, machine, wrapped, timeout=timeout)
        return result


def backend_of(runner: Executor, machine: str) -> Any:
    """The backend that holds `machine`: a lab routes (`backend_for`), a backend is one."""
    route = getattr(runner, "backend_for", None)
    return route(machine) if callable(route) else runner


def manifest_of(runner: Executor, backend: Any, machine: str) -> Manifest | None:
    """The manifest of the image `machine` was made from, when the runner is a lab that
    knows it. A backend that says what its machines start from (`image_manifest`: the
    vagrant backend's boxes) is asked; another VM backend has none; a container is made
    from the image's tarball."""
    spec = getattr(runner, "spec", None)
    if not callable(spec):
        return None
    image = str(spec(machine).image)
    if isinstance(backend, ImageManifests):
        return backend.image_manifest(image)
    if "vm" in getattr(backend, "capabilities", ()):
        return None
    return manifests.for_image(image)


def words_of(probe: Probe) -> tuple[str, ...]:
    """The machine binaries a probe may run: words of its shell text (never its arguments)."""
    if len(probe.argv) < 3 or probe.argv[:2] != ("sh", "-c"):
        return tuple(w for w in probe.argv[:1] if w not in applets())
    return tuple(tamper.command_words(probe.argv[2], applets()))


def stage(backend: Any, lab: LabRef, machine: str) -> str:
    """Copy busybox into the machine at a fresh random path; that path."""
    if isinstance(backend, ToolStager):
        staged = backend.stage_tool(lab, machine, TOOL_NAME, busybox())
        if staged:
            return staged
    folder = f"/.guestlab-{os.urandom(8).hex()}"
    backend.put_file(lab, machine, f"{folder}/{TOOL_NAME}", busybox(), 0o700)
    return f"{folder}/{TOOL_NAME}"


def unstage(backend: Any, lab: LabRef, machine: str, tool: str) -> None:
    """Backends that stage their own way remove the tool; elsewhere the batch removed it."""
    if isinstance(backend, ToolStager):
        backend.unstage_tool(lab, machine, tool)


@dataclass(frozen=True)
class Guard:
    """The machine binaries of one machine's probes, and the image to compare them with;
    where its engine's own mounts are known, the mounts over its kernel's views too
    (kernel_views.py)."""

    words: tuple[tuple[str, ...], ...]  # per probe of the batch, in order
    manifest: Manifest | None
    views: tuple[EngineMount, ...] | None = None  # None: the views are not judged

    def probe(self, machine: str) -> Probe | None:
        every = [w for ws in self.words for w in ws]
        script, paths = "exit 0", []
        if self.manifest is not None and every:
            script = tamper.integrity_script(self.manifest.libraries)
            paths = tamper.candidates(dict.fromkeys(every), self.manifest)
        elif self.views is None or not self.words:
            return None
        if self.views is not None:
            script = f"{kernel_views.SCRIPT}; {script}"
        return Probe(machine, sh(script, *paths))

    def verdicts(self, seen: Outcome | None) -> list[str | None]:
        """Per probe: None, or why its result cannot be trusted."""
        judged = self.views is not None
        if self.manifest is None and not judged:
            return [None] * len(self.words)
        why = unverified(seen)
        if why:
            problem = _(
                "the machine's binaries could not be verified against the image ({why})"
            ).format(why=why)
            return [problem if ws or judged else None for ws in self.words]
        assert seen is not None  # unverified says so otherwise
        if self.views is not None:
            hidden = kernel_views.covered(kernel_views.parse(seen.stdout), self.views)
            if hidden:  # what the kernel shows is covered: no probe of this machine holds
                return [hidden] * len(self.words)
        if self.manifest is None:
            return [None] * len(self.words)
        found = tamper.Seen.parse(seen.stdout)
        return [tamper.tampered(ws, found, self.manifest) for ws in self.words]


def unverified(seen: Outcome | None) -> str:
    """Why the integrity probe's result cannot be used ('' when it can): said in the check's
    message, so that a slow machine is told apart from an engine error or a dishonest one."""
    if isinstance(seen, Unreachable | Tampered):
        return seen.message
    if seen is None:
        return _("no result")
    if seen.timed_out:
        return _("the hashing timed out")
    if seen.truncated:
        return _("its output was cut short")
    if seen.exit_code != 0:
        return _("exit status {code}").format(code=seen.exit_code)
    return ""


def run_machine(
    runner: Executor,
    lab: LabRef,
    machine: str,
    items: Sequence[tuple[Probe, float]],
) -> list[Outcome]:
    """The outcomes of one machine's probes: engine reads beside one trusted batch."""
    backend = backend_of(runner, machine)
    readable = isinstance(backend, FileReader)
    engine = [
        i
        for i, (p, _t) in enumerate(items)
        if readable and p.reads and not p.reads.startswith(VOLATILE)
    ]
    rest = [i for i in range(len(items)) if i not in engine]
    batch = [items[i] for i in rest]
    # the mounts are listed by the trusted shell: the machine's own awk could hide some
    views = kernel_views.views_of(backend) if _stages(backend) else None
    guard = Guard(tuple(words_of(p) for p, _t in batch), _manifest(runner, backend, machine), views)
    check = guard.probe(machine)
    if check is not None:
        batch.append((check, max(t for _p, t in items)))
    outcomes: dict[int, Outcome | None] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:  # the reads go on while the batch runs
        running = (
            pool.submit(speaking(_trusted_batch), backend, lab, machine, batch) if batch else None
        )
        for i in engine:
            outcomes[i] = read_probe(backend, lab, machine, items[i][0])
        got = running.result() if running is not None else []
    seen = got.pop() if check is not None else None
    for i, outcome, problem in zip(rest, got, guard.verdicts(seen), strict=True):
        outcomes[i] = Tampered(problem) if problem else outcome
    late = [i for i in engine if outcomes[i] is None]  # the engine could not read it here
    if late:
        again = run_machine(_Plain(backend), lab, machine, [_as_run(items[i]) for i in late])
        outcomes.update(zip(late, again, strict=True))
    return [outcomes.get(i) or Unreachable(_("no result")) for i in range(len(items))]


def _engine_reads(probe: Probe) -> bool:
    return bool(probe.reads) and not probe.reads.startswith(VOLATILE)


@dataclass(frozen=True)
class _Plain:
    """A backend seen without its file reads (for files its engine cannot read here)."""

    backend: Any

    def __getattr__(self, name: str) -> Any:
        if name == "read_file":
            raise AttributeError(name)
        return getattr(self.backend, name)


def _as_run(item: tuple[Probe, float]) -> tuple[Probe, float]:
    probe, timeout = item
    return Probe(probe.machine, probe.argv), timeout


def _manifest(runner: Executor, backend: Any, machine: str) -> Manifest | None:
    try:
        return manifest_of(runner, backend, machine)
    except (OSError, ValueError):  # an unreadable tarball: binaries are not compared
        return None


def _stages(backend: Any) -> bool:
    """Whether the trusted shell can be copied into the backend's machines."""
    return isinstance(backend, ToolStager) or hasattr(backend, "put_file")


def _trusted_batch(
    backend: Any, lab: LabRef, machine: str, batch: Sequence[tuple[Probe, float]]
) -> list[Outcome]:
    if not _stages(backend):
        # only an executor that can copy no file at all (a test's fake) is asked plainly
        return execute_batch(backend, lab, machine, batch)
    try:
        tool = stage(backend, lab, machine)
    except MemberUnreachable:
        raise  # the lab is out of reach, not wrong: no grade at all
    except GuestlabError as e:
        return [
            Unreachable(
                _("the trusted probe shell could not be copied in: {error}").format(error=e)
            )
        ] * len(batch)
    try:
        return execute_batch(
            TrustedShell(backend, tool), lab, machine, batch, tool_dir=os.path.dirname(tool)
        )
    finally:
        unstage(backend, lab, machine, tool)
