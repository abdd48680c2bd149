"""A class on LXD through its remote (HTTPS) endpoint, as on an LXD cluster.

The local daemon listens on 127.0.0.1 for the test; a client certificate made here is
trusted for the test only and removed afterwards, and so is the listening address when the
test had to set it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import engine, student_id
from tests.integration.test_classroom_docker import ROOT, SCENARIO, WIRED

pytestmark = pytest.mark.lxd

ADDRESS = "127.0.0.1:8443"
SERVER_CERT = Path("/var/lib/lxd/server.crt")


def lxc(*args: str) -> str:
    res = subprocess.run(["lxc", *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"lxc {' '.join(args)}: {res.stderr}"
    return res.stdout.strip()


def fingerprint(cert: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("=", 1)[1].strip().replace(":", "").lower()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    engine("lxd")
    address = lxc("config", "get", "core.https_address")
    set_here = not address
    if set_here:
        lxc("config", "set", "core.https_address", ADDRESS)
        address = ADDRESS
    port = address.rsplit(":", 1)[1] if ":" in address else "8443"
    certs = tmp_path_factory.mktemp("lxd-client")
    name = f"guestlab-test-{student_id()}"
    cert, key = certs / "client.crt", certs / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}"],
        capture_output=True,
        check=True,
    )  # fmt: skip
    env = {
        "GUESTLAB_LXD_ENDPOINT": f"https://127.0.0.1:{port}",
        "GUESTLAB_LXD_CERT": str(cert),
        "GUESTLAB_LXD_KEY": str(key),
        # pin the server's own certificate (it names 127.0.0.1)
        "GUESTLAB_LXD_VERIFY": str(SERVER_CERT) if SERVER_CERT.exists() else "false",
    }
    try:
        yield env
    finally:
        trusted = json.loads(lxc("config", "trust", "list", "--format", "json"))
        mine = fingerprint(cert)
        if any(t.get("fingerprint") == mine for t in trusted):
            lxc("config", "trust", "remove", mine[:12])
        if set_here:
            lxc("config", "unset", "core.https_address")


def guestlab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "COLUMNS": "200"}
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the session's `verify`, and
    # pylxd then pins that bundle's first certificate instead of GUESTLAB_LXD_VERIFY (see the
    # report of issue 6): keep them out until the LXD backend shields itself from them
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        full.pop(var, None)
    return subprocess.run(
        [sys.executable, "-c", WIRED, *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=full,
    )


def instances_of(students: list[str]) -> list[str]:
    listed = json.loads(lxc("list", "--format", "json"))
    keys = {f"{SCENARIO}--{s}" for s in students}
    return [i["name"] for i in listed if (i.get("config") or {}).get("user.guestlab.lab") in keys]


def test_a_class_comes_up_and_is_graded_through_the_remote_endpoint(
    remote: dict[str, str], tmp_path: Path
) -> None:
    students = [student_id(), student_id()]
    roster = tmp_path / "class.csv"
    roster.write_text("id,name,email\n" + "".join(f"{s},Student {s},\n" for s in students))

    # before the certificate is trusted the remote refuses: the endpoint is really in use
    refused = guestlab(remote, "class", "up", SCENARIO, "--roster", str(roster), "--backend", "lxd")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "does not trust this client's certificate" in refused.stderr
    assert instances_of(students) == []

    lxc("config", "trust", "add", remote["GUESTLAB_LXD_CERT"], "--name", "guestlab-test")
    try:
        up = guestlab(remote, "class", "up", SCENARIO, "--roster", str(roster), "--backend", "lxd")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "2/2 lab(s) up" in up.stdout
        assert len(instances_of(students)) == 4  # template and clone for each

        solved = guestlab(remote, "solve", SCENARIO, "--student", students[1])
        assert solved.returncode == 0, solved.stdout + solved.stderr
        check = guestlab(remote, "class", "check", SCENARIO, "--format", "json")
        assert check.returncode == 0, check.stdout + check.stderr
        rows = {r["student"]: r for r in json.loads(check.stdout)["students"]}
        assert rows[students[0]]["total"] == 0
        assert rows[students[1]]["total"] == rows[students[1]]["max_total"] == 5
    finally:
        down = guestlab(remote, "class", "down", SCENARIO)
        assert down.returncode == 0, down.stdout + down.stderr
        assert instances_of(students) == []
