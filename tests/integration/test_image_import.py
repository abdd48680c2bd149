"""Your own images, end to end: another release's root file system imported as a file, a
lab brought up on it, graded before and after its solution, and the image removed."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from orchestrator.images.needed import PROOF_RELEASES
from orchestrator.images.rootfs import tarball_path
from orchestrator.scenario.catalog import library_dir
from tests.integration.conftest import engine, guestlab, student_id

CONTAINERS = [pytest.param(n, marks=getattr(pytest.mark, n)) for n in ("docker", "lxd", "nspawn")]
SCENARIO = "machine-id-clone"


def scenario_on(image: str, folder: Path) -> Path:
    """A copy of the library's machine-id-clone whose machines run `image`."""
    lib = library_dir()
    (folder / "scenarios").mkdir(parents=True)
    (folder / "labs").mkdir()
    os.symlink(lib / "labs" / SCENARIO, folder / "labs" / SCENARIO)
    text = (lib / "scenarios" / f"{SCENARIO}.yaml").read_text()
    assert "image: debian-12-systemd" in text
    path = folder / "scenarios" / f"{SCENARIO}.yaml"
    path.write_text(text.replace("image: debian-12-systemd", f"image: {image}"))
    return path


def ok(res, *codes: int) -> str:  # type: ignore[no-untyped-def]
    assert res.returncode in (codes or (0,)), f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.parametrize("release", PROOF_RELEASES)
@pytest.mark.parametrize("backend_name", CONTAINERS)
def test_a_lab_is_proven_on_an_imported_release(
    tmp_path: Path, backend_name: str, release: str
) -> None:
    engine(backend_name)
    source = tarball_path(release)
    assert source.exists(), f"{release} is built by scripts/setup.sh"
    given = tmp_path / f"{release}-rootfs.tar"
    os.link(source, given)  # a file handed over, as an instructor's would be
    name = f"t-{release.split('-')[1]}-{uuid.uuid4().hex[:6]}"
    try:
        out = ok(guestlab("image", "import", name, str(given), "--backend", backend_name))
        assert "debian" in out and "init systemd" in out
        listed = ok(guestlab("image", "list", env={"COLUMNS": "250"}))
        assert name in listed and "imported" in listed
        path = scenario_on(name, tmp_path / "course")
        # the author's proof: up, every task fails, each passes after its solution (through
        # a reboot for unique-id), reset, down leaves nothing
        proof = guestlab("prove", str(path), "--backend", backend_name, timeout=1200)
        assert proof.returncode == 0, proof.stdout + proof.stderr
    finally:
        removed = ok(guestlab("image", "rm", name))
    assert backend_name in removed and "the image store" in removed
    assert "unknown image" in guestlab("image", "rm", name).stderr


VM_SCENARIO = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {{id: box-proof, title: A VM from an imported box}}
backends: [vagrant]
machines:
  - {{name: vm, kind: vm, image: {image}, init: systemd, resources: {{memory: 384M, cpus: 1}}}}
tasks:
  - id: mark
    title: Leave a mark
    checks:
      - {{machine: vm, file: {{path: /root/mark}}}}
      - machine: vm
        run: . /etc/os-release && test "$ID" = {os}
    solution:
      - {{machine: vm, run: touch /root/mark}}
"""


@pytest.mark.vagrant
def test_a_vm_boots_from_an_imported_box_and_a_qcow2_is_refused_when_hostile(
    tmp_path: Path,
) -> None:
    from orchestrator.images.box import box_path

    engine("vagrant")
    source = box_path("debian-12-systemd")
    assert source.exists(), "the VM contract's box is built by scripts/setup.sh"
    name = f"t-box-{uuid.uuid4().hex[:6]}"
    huge = tmp_path / "huge.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(huge), "50G"], check=True, capture_output=True
    )
    refused = guestlab("image", "import", name, str(huge))
    assert refused.returncode == 2 and "claims a 50 GiB disk" in refused.stderr
    student = student_id()
    path = tmp_path / "scenarios" / "box-proof.yaml"
    path.parent.mkdir()
    path.write_text(VM_SCENARIO.format(image=name, os="debian"))
    lab = ["box-proof", "--student", student]
    try:
        out = ok(guestlab("image", "import", name, str(source), "--backend", "vagrant"))
        assert "on `kind: vm` machines" in out
        ok(guestlab("up", str(path), "--student", student), 0)
        ok(guestlab("check", *lab), 1)
        ok(guestlab("solve", *lab))
        ok(guestlab("check", *lab))
    finally:
        ok(guestlab("down", *lab))
        removed = ok(guestlab("image", "rm", name))
    assert "vagrant" in removed and "the image store" in removed
    # a bare qcow2 (the same disk) takes the same way into Vagrant and out again
    with tarfile.open(source) as tar:
        tar.extract("box.img", tmp_path, filter="data")
    ok(guestlab("image", "import", name, str(tmp_path / "box.img"), "--backend", "vagrant"))
    assert "imported box" in ok(guestlab("image", "list", env={"COLUMNS": "250"}))
    removed = ok(guestlab("image", "rm", name))
    assert "vagrant" in removed and "the image store" in removed


def _qcow2(path: Path, *extra: str, size: str = "1G") -> Path:
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", *extra, str(path), size],
        check=True,
        capture_output=True,
    )
    return path


def test_hostile_vm_disks_are_refused_with_a_sentence_and_leave_nothing(tmp_path: Path) -> None:
    """No engine runs: qemu-img and debugfs read the files, as `image import` does."""
    built = _qcow2(tmp_path / "empty.qcow2")
    whole = built.read_bytes()
    cut = tmp_path / "cut.qcow2"
    cut.write_bytes(whole[: len(whole) // 2])
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 1024 * 1024)
    vbox = tmp_path / "vbox.box"
    with tarfile.open(vbox, "w") as tar:
        meta = tmp_path / "metadata.json"
        meta.write_text('{"provider": "virtualbox"}')
        tar.add(meta, "metadata.json")
        tar.add(built, "box.img")
    cases = {
        _qcow2(tmp_path / "huge.qcow2", size="50G"): "claims a 50 GiB disk",
        _qcow2(tmp_path / "back.qcow2", "-b", "/etc/shadow", "-F", "raw"): "names a backing file",
        cut: "truncated or corrupt|not a disk image",
        built: "no ext2/3/4 root file system",  # a disk with nothing on it
        vbox: "a box for virtualbox, not libvirt",
    }
    for path, words in cases.items():
        name = f"t-bad-{uuid.uuid4().hex[:6]}"
        res = guestlab("image", "import", name, str(path))
        assert res.returncode == 2 and re.search(words, res.stderr), (path.name, res.stderr)
        assert "Traceback" not in res.stderr
        assert name not in guestlab("image", "list", env={"COLUMNS": "250"}).stdout
    assert (
        guestlab("image", "import", "t-raw", str(raw)).returncode == 2
    )  # neither a tar nor a disk
