"""A class of four on the real Docker engine, one of them hostile with root in their machines.

mallory's clone gets a 1 GB sparse SSH host key, a FIFO fed by `yes` as /etc/machine-id
and a `dbus-uuidgen` that prints rich markup, OSC 52 (the clipboard), a window title and
cursor escapes (a binary the grader now refuses to run, as tampered; the unit tests'
hostile fake engine still prints all of it). `class check` must still grade the other three in bounded time and memory,
give mallory sentences, and print and export nothing a terminal or a parser would act on.
Then a student plants a classmate's parameter: only the planter is flagged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from orchestrator.backends.contract import LabRef
from orchestrator.backends.docker.engine import container_name
from orchestrator.state import Store
from tests.integration.conftest import (
    GUESTLAB,
    ROOT,
    docker_leftovers,
    engine,
    guestlab,
    student_id,
)
from tests.unit.test_params_keyed import unkeyed

pytestmark = pytest.mark.docker

SCENARIO = "machine-id-clone"
WIDE = {"COLUMNS": "250"}
#: what mallory's dbus-uuidgen prints on stderr: markup, OSC 52, a title, a cleared screen
HOSTILE = r"[/nope] \033]52;c;cm0gLXJmIH4=\007\033]0;pwned\007\033[2J\033[?25l\302\233" "1m done"
#: a hostile clone never finishes booting (its machine ID is a FIFO): the check's reboot
#: waits out the boot timeout, set lower than the default 90 s for the checks here (the
#: three other clones boot in a few seconds), then the probes reading the FIFO their own
#: 30 s; the rest is margin
BOOT_TIMEOUT = 45.0
CHECK_ENV = {**WIDE, "GUESTLAB_CONTAINER_BOOT_TIMEOUT": str(BOOT_TIMEOUT)}
CHECK_SECONDS = BOOT_TIMEOUT + 30 + 60
MAX_RSS_KIB = 300 * 1024


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return guestlab(*args, timeout=timeout, env=WIDE)


def in_machine(student: str, machine: str, script: str) -> None:
    res = run("exec", SCENARIO, machine, "--student", student, "--", "sh", "-c", script)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    engine("docker")
    ids = {name: student_id() for name in ("mallory", "ann", "bob", "cid")}
    roster = tmp_path_factory.mktemp("hostile") / "class.csv"
    roster.write_text("id,name,email\n" + "".join(f"{i},{n.title()},\n" for n, i in ids.items()))
    try:
        up = run("class", "up", SCENARIO, "--roster", str(roster), "--parallel", "4")
        assert up.returncode == 0, up.stdout + up.stderr
        yield ids
    finally:
        down = run("class", "down", SCENARIO)
        assert down.returncode == 0, down.stdout + down.stderr
        for s in ids.values():
            assert docker_leftovers(f"{SCENARIO}--{s}") == []


@pytest.fixture(scope="module")
def hostile(klass: dict) -> dict:
    mallory = klass["mallory"]
    fake_dbus = f"#!/bin/sh\nprintf '{HOSTILE}' >&2\nexit 1\n"
    for machine in ("template", "clone"):
        in_machine(
            mallory,
            machine,
            f"cat > /usr/bin/dbus-uuidgen <<'EOF'\n{fake_dbus}EOF\n",
        )
    in_machine(
        mallory,
        "clone",
        "mkdir -p /etc/ssh && truncate -s 1G /etc/ssh/ssh_host_ed25519_key.pub && "
        "rm -f /etc/machine-id && mkfifo /etc/machine-id && "
        "(setsid sh -c 'while :; do yes > /etc/machine-id; done' "
        "</dev/null >/dev/null 2>&1 &)",
    )
    return klass


def started_at(student: str) -> str:
    """When the student's clone last started, as the engine says (a restart changes it)."""
    name = container_name(LabRef(SCENARIO, student), "clone")
    res = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def measured(*args: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run guestlab under /usr/bin/time -v: (result, seconds, peak RSS in KiB)."""
    started = time.monotonic()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *GUESTLAB, *args],
        capture_output=True,
        text=True,
        timeout=CHECK_SECONDS + 60,
        cwd=ROOT,
        env={**os.environ, **CHECK_ENV},
    )
    seconds = time.monotonic() - started
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert rss, proc.stderr[-2000:]
    return proc, seconds, int(rss.group(1))


def test_a_hostile_lab_is_graded_with_sentences_and_the_others_as_usual(
    docker_backend: object, hostile: dict
) -> None:
    res, seconds, rss = measured("class", "check", SCENARIO, "--format", "json")
    print(f"class check with a hostile lab: {seconds:.1f} s, peak RSS {rss / 1024:.0f} MiB")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert seconds < CHECK_SECONDS and rss < MAX_RSS_KIB, (seconds, rss)
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr.split("\tCommand being timed")[0]
    book = json.loads(res.stdout)
    rows = {r["student"]: r for r in book["students"]}
    for name in ("ann", "bob", "cid"):
        r = rows[hostile[name]]
        assert r["error"] == "" and r["total"] == 0 and r["max_total"] == 5
        assert {c["state"] for c in r["tasks"].values()} == {"fail"}
        assert r["copies"] == []
    m = rows[hostile["mallory"]]
    assert m["error"] == ""
    messages = [msg for c in m["tasks"].values() for msg in c["messages"]]
    text = "\n".join(messages)
    assert "/etc/machine-id is not a regular file (fifo), so it was not read" in text, text
    # the fake dbus-uuidgen is never run: its hostile stderr cannot reach the report
    assert "tampered: /usr/bin/dbus-uuidgen differs from the image" in text, text
    assert "[/nope]" not in text and "pwned" not in text and "52;" not in text
    notes = [f.get("problem", "") for f in m["copies"]]
    assert (
        "ssh-host-key of clone: /etc/ssh/ssh_host_ed25519_key.pub is larger than 4 KiB" in notes
    ), notes
    assert "machine-id of clone: /etc/machine-id is not a regular file" in notes, notes


def test_every_output_of_the_hostile_check_is_clean_and_parses(
    docker_backend: object, hostile: dict
) -> None:
    mallory = hostile["mallory"]
    # without the reboot, which the class check above already went through (a hostile
    # machine's boot takes its whole boot timeout): what is printed is the same code's
    own = run("check", SCENARIO, "--student", mallory, "--no-reboot", timeout=CHECK_SECONDS)
    assert own.returncode == 1, own.stdout + own.stderr  # checks failed, nothing crashed
    assert "tampered: /usr/bin/dbus-uuidgen differs" in " ".join(own.stdout.split())
    assert "\x1b" not in own.stdout + own.stderr and "\x07" not in own.stdout
    table = run("class", "export", SCENARIO, "--format", "csv")
    assert table.returncode == 0 and "\x1b" not in table.stdout
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(table.stdout))}
    assert set(rows) == set(hostile.values())
    assert "larger than 4 KiB" in rows[mallory]["copy_flags"]
    junit = run("class", "export", SCENARIO, "--format", "junit")
    assert junit.returncode == 0 and "\x1b" not in junit.stdout
    suites = ET.fromstring(junit.stdout.split("?>", 1)[1]).findall("testsuite")
    assert len(suites) == 4
    exported = run("class", "export", SCENARIO, "--format", "json")
    assert len(json.loads(exported.stdout)["students"]) == 4
    own_junit = run("check", SCENARIO, "--student", mallory, "--no-reboot", "--format", "junit")
    assert ET.fromstring(own_junit.stdout.split("?>", 1)[1]).tag == "testsuite"
    assert "\x1b" not in own_junit.stdout


def test_a_planted_classmates_value_does_not_flag_the_classmate(
    docker_backend: object, hostile: dict
) -> None:
    ann, bob = hostile["ann"], hostile["bob"]
    store = Store()
    try:
        record = store.lab(LabRef(SCENARIO, ann).key)
        assert record is not None
        ann_value = record.params["template_id"]
    finally:
        store.close()
    # the value is keyed: it is not what anyone can compute from the names
    assert ann_value != unkeyed(SCENARIO, ann, "template_id")
    in_machine(bob, "clone", f"printf '%s\\n' {ann_value} > /etc/machine-id")
    # the instructor's live view: no machine restarted, the reboot-proof task unproven
    boots = {s: started_at(s) for s in (ann, bob)}
    res = run("class", "check", SCENARIO, "--no-reboot", "--format", "json", timeout=CHECK_SECONDS)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert {s: started_at(s) for s in (ann, bob)} == boots
    rows = {r["student"]: r for r in json.loads(res.stdout)["students"]}
    assert rows[bob]["tasks"]["unique-id"]["unproven"] is True
    assert rows[bob]["tasks"]["unique-id"]["state"] == "fail"
    assert rows[ann]["copies"] == []  # her value was planted, not shared by her
    flags = [f for f in rows[bob]["copies"] if "problem" not in f]
    assert len(flags) == 1 and flags[0]["value"] == ann_value
    assert flags[0]["what"] == "machine-id of clone"
    assert flags[0]["with"][0]["student"] == ann and flags[0]["with"][0]["own"] is True
    table = run("class", "export", SCENARIO, "--format", "csv")
    row = {r["student"]: r for r in csv.DictReader(io.StringIO(table.stdout))}
    assert row[bob]["copy_flags"].startswith(f"machine-id of clone holds {ann}'s parameter")
    assert row[ann]["copy_flags"] == ""


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-s"]))
