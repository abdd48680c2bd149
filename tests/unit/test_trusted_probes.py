"""The parts of trusted probes that need no engine: openat2 in a root, manifests, words.

The cheats themselves, on real machines, are tests/integration/test_cheats.py.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backends import inroot
from orchestrator.backends.contract import ExecResult, FileProbe, LabRef
from orchestrator.checks import reads, tamper, trusted
from orchestrator.checks.file import MISSING, NOT_REGULAR, TOO_BIG
from orchestrator.checks.form import Probe, Unreachable
from orchestrator.images.manifest import Manifest, from_tar


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[inroot.Root, Path]]:
    """A machine tree with links that try to leave it, and a secret beside it."""
    (tmp_path / "secret").write_text("host secret\n")
    tree = tmp_path / "machine"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("box\n")
    (tree / "etc" / "abs").symlink_to(tmp_path / "secret")
    (tree / "etc" / "up").symlink_to("../../secret")
    (tree / "etc" / "dir").symlink_to("../../")
    (tree / "etc" / "magic").symlink_to("/proc/self/root/etc/hostname")
    os.mkfifo(tree / "etc" / "fifo")
    with (tree / "etc" / "big").open("wb") as f:
        f.truncate(10 * 1024**3)
    r = inroot.Root(os.open(tree, os.O_PATH | os.O_DIRECTORY))
    try:
        yield r, tree
    finally:
        r.close()


def test_openat2_reads_a_file_and_says_what_each_path_is(root: tuple[inroot.Root, Path]) -> None:
    r, _tree = root
    got = inroot.probe(r, "/etc/hostname", 100)
    assert (got.kind, got.data, got.size) == ("regular", b"box\n", 4)
    assert inroot.probe(r, "/etc/abs", 100).kind == "symlink"
    assert inroot.probe(r, "/etc/nothing", 100).kind == "absent"
    assert inroot.probe(r, "/", 100).kind == "directory"


@pytest.mark.parametrize(
    "path", ["/etc/dir/secret", "/etc/up", "../../secret", "/etc/dir/../../secret"]
)
def test_openat2_never_leaves_the_root(root: tuple[inroot.Root, Path], path: str) -> None:
    r, _tree = root
    got = inroot.probe(r, path, 100)
    assert b"host secret" not in got.data
    assert got.kind in ("absent", "symlink")


def test_a_link_through_proc_is_refused(root: tuple[inroot.Root, Path]) -> None:
    r, _tree = root
    with pytest.raises(OSError):
        inroot.openat2(r.fd, "/etc/magic", os.O_RDONLY, inroot.IN_ROOT)


def test_a_fifo_or_a_sparse_file_keeps_the_read_bounded(root: tuple[inroot.Root, Path]) -> None:
    r, _tree = root
    fifo = inroot.probe(r, "/etc/fifo", 100)  # never opened: a read would wait for a writer
    assert (fifo.kind, fifo.data) == ("fifo", b"")
    big = inroot.probe(r, "/etc/big", 100)
    assert big.size == 10 * 1024**3 and len(big.data) == 100


def test_a_tool_staged_in_the_root_is_removed_after(root: tuple[inroot.Root, Path]) -> None:
    r, tree = root
    path = inroot.stage(r, "busybox", b"\x7fELF")
    assert (tree / path.lstrip("/")).read_bytes() == b"\x7fELF"
    assert os.access(tree / path.lstrip("/"), os.X_OK)
    inroot.unstage(r, path)
    assert not any(p.name.startswith(".guestlab-") for p in tree.iterdir())


def test_a_machine_whose_init_is_gone_is_named_in_the_error() -> None:
    from orchestrator.errors import MachineUnavailable, ProvisioningError

    gone = 2**22 + 1  # above pid_max's default ceiling: no such process
    with pytest.raises(MachineUnavailable, match="reading /etc/hostname in web"):
        inroot.read_machine(gone, "web", "/etc/hostname", 100)
    with pytest.raises(ProvisioningError, match="copying busybox into web"):
        inroot.stage_machine(gone, "web", "busybox", b"\x7fELF")


class Reader:
    """A FileReader over a dict of paths."""

    def __init__(self, files: dict[str, FileProbe]) -> None:
        self.files = files

    def read_file(self, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe:
        got = self.files.get(path, FileProbe("absent"))
        return FileProbe(got.kind, got.mode, got.uid, got.size, got.data[:limit], got.target)


LAB = LabRef("s", "t")


def test_an_engine_read_is_shaped_as_the_file_probe_prints() -> None:
    r = Reader(
        {
            "/etc/passwd": FileProbe("regular", 0o644, 0, 40, b"root:x:0:0::/root:/bin/sh\n"),
            "/a": FileProbe("regular", 0o600, 0, 3, b"42\n"),
            "/l": FileProbe("symlink", 0o777, 0, 2, target="a"),
            "/f": FileProbe("fifo", 0o644, 0, 0),
            "/big": FileProbe("regular", 0o644, 0, 10 * 1024**3, b"\0" * 100),
        }
    )
    probe = Probe("m", ("sh",), reads="/a", owner_name=True)
    assert reads.read_probe(r, LAB, "m", probe) == ExecResult(0, "600 root\n42\n")
    link = reads.read_probe(r, LAB, "m", Probe("m", ("sh",), reads="/l"))
    assert link == ExecResult(0, "777 0\n42\n")
    fifo = reads.read_probe(r, LAB, "m", Probe("m", ("sh",), reads="/f"))
    assert isinstance(fifo, ExecResult) and fifo.exit_code == NOT_REGULAR
    big = reads.read_probe(r, LAB, "m", Probe("m", ("sh",), reads="/big"))
    assert isinstance(big, ExecResult) and big.exit_code == TOO_BIG
    gone = reads.read_probe(r, LAB, "m", Probe("m", ("sh",), reads="/none"))
    assert isinstance(gone, ExecResult) and gone.exit_code == MISSING


def test_a_symlink_loop_is_not_a_regular_file() -> None:
    r = Reader({"/x": FileProbe("symlink", target="/y"), "/y": FileProbe("symlink", target="/x")})
    got = reads.read_probe(r, LAB, "m", Probe("m", ("sh",), reads="/x"))
    assert isinstance(got, ExecResult) and got.exit_code == NOT_REGULAR


APPLETS = frozenset({"cat", "test", "stat", "grep", "tr", "sha256sum", "cut", "head"})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            'test "$(dbus-uuidgen --get)" = "$(cat /etc/machine-id)"',
            ["dbus-uuidgen", "/etc/machine-id"],
        ),
        ("sshd -t && systemctl is-active --quiet ssh", ["sshd", "systemctl", "is-active", "ssh"]),
        ("x=$(getent passwd u) || exit 1", ["x", "getent", "passwd", "u", "1"]),
        (
            "head -n1 f | grep -qx '#cloud-config' && cloud-init schema",
            ["f", "cloud-init", "schema"],
        ),
        (
            "`hostnamectl`; /usr/bin/env A=1 lab-boot",
            ["hostnamectl", "/usr/bin/env", "A", "1", "lab-boot"],
        ),
        ("if true; then for x in a; do :; done; fi", ["true", "x", "a"]),
    ],
)
def test_command_words_over_approximate_what_may_run(text: str, words: list[str]) -> None:
    assert tamper.command_words(text, APPLETS) == words


def image() -> Manifest:
    """An image with merged /usr, an alternatives link and a loader."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        add("./bin", link="usr/bin")
        add("./usr/bin/dbus-uuidgen", b"real dbus")
        add("./usr/bin/systemctl", b"real systemctl")
        add("./usr/bin/awk", link="/etc/alternatives/awk")
        add("./etc/alternatives/awk", link="/usr/bin/mawk")
        add("./usr/bin/mawk", b"mawk")
        add("./usr/lib/x86_64-linux-gnu/libc.so.6", b"libc")
        add("./etc/hostname", b"not a binary")
    buf.seek(0)
    return from_tar(buf)


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_manifest_resolves_links_as_the_image_does() -> None:
    m = image()
    assert m.expected("/bin/dbus-uuidgen") == sha(b"real dbus")
    assert m.expected("/usr/bin/awk") == sha(b"mawk")
    assert m.expected("/etc/hostname") is None
    assert m.libraries == ["/usr/lib/x86_64-linux-gnu/libc.so.6"]
    assert Manifest.from_json(m.to_json()) == m


def seen(**changes: str) -> tamper.Seen:
    hashes = {
        "/usr/bin/dbus-uuidgen": sha(b"real dbus"),
        "/bin/dbus-uuidgen": sha(b"real dbus"),
        "/usr/lib/x86_64-linux-gnu/libc.so.6": sha(b"libc"),
    }
    hashes.update({k.replace("__", "/").replace("_", "-"): v for k, v in changes.items()})
    return tamper.Seen(False, hashes)


def test_an_unchanged_machine_is_trusted_and_a_changed_binary_is_named() -> None:
    m = image()
    assert tamper.tampered(["dbus-uuidgen"], seen(), m) is None
    fake = tamper.Seen(False, {**seen().hashes, "/usr/bin/dbus-uuidgen": sha(b"fake")})
    assert (
        tamper.tampered(["dbus-uuidgen"], fake, m)
        == "tampered: /usr/bin/dbus-uuidgen differs from the image"
    )
    libc = tamper.Seen(False, {**seen().hashes, "/usr/lib/x86_64-linux-gnu/libc.so.6": "0"})
    assert "libc.so.6 differs" in (tamper.tampered(["dbus-uuidgen"], libc, m) or "")
    assert "ld.so.preload" in (tamper.tampered(["x"], tamper.Seen(True, {}), m) or "")
    assert tamper.tampered([], tamper.Seen(True, {}), m) is None  # no machine binary runs


def test_a_new_file_before_the_image_binary_in_path_shadows_it() -> None:
    m = image()
    shim = tamper.Seen(False, {**seen().hashes, "/usr/sbin/dbus-uuidgen": sha(b"shim")})
    assert (
        tamper.tampered(["dbus-uuidgen"], shim, m)
        == "tampered: /usr/sbin/dbus-uuidgen shadows /usr/bin/dbus-uuidgen from the image"
    )
    # a scenario's own tool, in no image directory of the manifest, is no tampering
    own = tamper.Seen(False, {**seen().hashes, "/usr/local/sbin/lab-boot": sha(b"lab")})
    assert tamper.tampered(["lab-boot"], own, m) is None


def test_a_fifo_in_place_of_a_binary_is_tampering() -> None:
    m = image()
    out = (
        "notafile  /usr/bin/dbus-uuidgen\n" + f"{sha(b'libc')}  /usr/lib/x86_64-linux-gnu/libc.so.6"
    )
    assert "differs" in (tamper.tampered(["dbus-uuidgen"], tamper.Seen.parse(out), m) or "")


def test_the_trusted_shell_is_busybox_static_with_a_clean_environment() -> None:
    class Backend:
        def __init__(self) -> None:
            self.argv: list[str] = []

        def exec(self, lab: LabRef, machine: str, argv: list[str], *, timeout: float) -> ExecResult:
            self.argv = argv
            return ExecResult(0)

    backend = Backend()
    trusted.TrustedShell(backend, "/.guestlab-x/busybox").exec(
        LAB, "m", ["sh", "-c", "true"], timeout=1
    )
    assert backend.argv[:3] == ["/.guestlab-x/busybox", "env", "-i"]
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin" in backend.argv
    assert backend.argv[-4:] == ["/.guestlab-x/busybox", "sh", "-c", "true"]
    if trusted.BUSYBOX.exists():
        assert trusted.busybox()[:4] == b"\x7fELF"


def test_an_unverifiable_machine_says_why() -> None:
    """The message of a check whose binaries could not be hashed names the cause."""
    unverified = trusted.unverified
    assert unverified(ExecResult(0, "", "")) == ""
    assert unverified(ExecResult(124, "", "", timed_out=True)) == "the hashing timed out"
    assert unverified(ExecResult(0, "x", "", truncated=True)) == "its output was cut short"
    assert unverified(ExecResult(2, "", "")) == "exit status 2"
    assert unverified(Unreachable("engine gone")) == "engine gone"
    assert unverified(None) == "no result"
