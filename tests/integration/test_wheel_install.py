"""The package as a user installs it: sdist and wheel built, the wheel installed into a fresh
virtualenv outside the checkout, and the bundled library used from another directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from orchestrator.backends.contract import LabRef
from tests.integration.conftest import ROOT, engine, student_id

pytestmark = pytest.mark.docker


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode in (0, 1), f"{argv}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_the_wheel_installed_elsewhere_lists_validates_and_runs_a_lab(tmp_path: Path) -> None:
    backend = engine("docker")
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("GUESTLAB_SCENARIOS", "PYTHONPATH")}
    subprocess.run(
        # the wheel is built from the sdist, which proves the sdist carries everything
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchestrator/library/scenarios/machine-id-clone.yaml" in names
    assert "orchestrator/library/labs/machine-id-clone/files/motd" in names
    assert any(n.startswith("orchestrator/web/templates/") for n in names)  # the seat's pages
    # the message catalog travels as its .po; a .mo is compiled where it is used
    assert "orchestrator/locale/pt_BR/LC_MESSAGES/guestlab.po" in names
    assert not [n for n in names if n.endswith(".mo")]
    with tarfile.open(sdist) as tar:
        assert any(
            n.endswith("orchestrator/library/scenarios/machine-id-clone.yaml")
            for n in tar.getnames()
        )

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    guestlab = str(venv / "bin/guestlab")

    listed = json.loads(run([guestlab, "list", "--format", "json"], elsewhere, env))
    files = {row["id"]: row["file"] for row in listed}
    assert "machine-id-clone" in files
    assert files["machine-id-clone"].startswith(str(venv))  # the installed copy, not the checkout
    assert "ok" in run([guestlab, "validate", files["machine-id-clone"]], elsewhere, env)
    assert "machine-id-clone" in run(
        [str(venv / "bin/python"), "-m", "orchestrator", "list"], elsewhere, env
    )

    student = student_id()
    lab = ["machine-id-clone", "--student", student]
    try:
        run([guestlab, "up", *lab, "--backend", "docker"], elsewhere, env)
        report = json.loads(run([guestlab, "check", *lab, "--format", "json"], elsewhere, env))
        assert report["score"] < report["max_score"]  # a fresh lab: the tasks are still to do
        cache = tmp_path / "cache"
        spoken = run(
            [guestlab, "status", "--lang", "pt-BR"],
            elsewhere,
            {**env, "XDG_CACHE_HOME": str(cache)},
        )
        assert "Laboratórios" in spoken and "situação" in spoken, spoken
        assert list((cache / "guestlab" / "locale").glob("pt_BR-*.mo"))  # compiled from the .po
    finally:
        run([guestlab, "down", *lab], elsewhere, env)
    assert backend.find(LabRef("machine-id-clone", student)) == {}


def test_a_new_scenario_validates_and_is_proven_as_written(tmp_path: Path) -> None:
    """`guestlab new` gives an author a scenario that `prove` passes before any edit."""
    engine("docker")
    env = dict(os.environ)
    made = subprocess.run(
        [sys.executable, "-m", "orchestrator", "new", "first-lab", "--dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    path = tmp_path / "scenarios" / "first-lab.yaml"
    valid = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert valid.returncode == 0, valid.stdout + valid.stderr
    proof = subprocess.run(
        [sys.executable, "-m", "orchestrator", "prove", str(path), "--backend", "docker"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert "down leaves nothing" in proof.stdout + proof.stderr
