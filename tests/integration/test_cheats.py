"""Cheats by root in a machine that must not pass a check, on every container backend.

A tiny scenario asks for a file's content (a `file` check and a `run` through `cat`), its
mode (through `stat`), a D-Bus machine ID (through `dbus-uuidgen`) and an active service.
Each test first shows that its cheat works in the machine (what the machine's own tools
now say is what the check wants), then that `check` still fails the task: the probes run
under a trusted static shell, read files through the engine, and compare the machine
binaries they run with the image's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id

WANT_ID = "0123456789abcdef0123456789abcdef"
ANSWER = "printf '42\\\\n' > /root/answer && chmod 600 /root/answer"


def cheat_scenario(
    scenario_id: str, what: str, backends: str, timeout: int, file_timeout: bool = False
) -> str:
    """The tiny scenario whose every answer root in `what` can fake; the VM's probes take
    longer (`timeout`), and there the file check, read in the VM, has one too."""
    bound = f", timeout: {timeout}" if file_timeout else ""
    return f"""\
apiVersion: guestlab/v1
kind: Scenario
metadata:
  id: {scenario_id}
  title: Answers a cheat plants{", in a VM" if file_timeout else ""}
  level: beginner
description: {what}; each task's answer can be faked by root in it.
backends: [{backends}]
machines:
  - name: box
    image: debian-12-systemd
setup:
  - machine: box
    run: |
      printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/cheat-demo.service
      systemctl daemon-reload
tasks:
  - id: file-read
    title: /root/answer says 42
    checks:
      - {{machine: box, file: {{path: /root/answer, matches: '^42\\s*$'}}{bound}}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
  - id: cat-run
    title: cat says 42
    checks:
      - {{machine: box, run: 'test "$(cat /root/answer)" = 42', timeout: {timeout}}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
  - id: stat-run
    title: /root/answer has mode 600
    checks:
      - {{machine: box, run: 'test "$(stat -c %a /root/answer)" = 600', timeout: {timeout}}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
  - id: dbus
    title: D-Bus reports the wanted ID
    checks:
      - {{machine: box, run: 'test "$(dbus-uuidgen --get)" = {WANT_ID}', timeout: {timeout}}}
    solution:
      - machine: box
        run: printf '%s\\n' {WANT_ID} > /etc/machine-id && ln -sf /etc/machine-id /var/lib/dbus/machine-id
  - id: service
    title: cheat-demo runs
    checks:
      - {{machine: box, service: {{name: cheat-demo.service, active: true}}, timeout: {timeout}}}
    solution: [{{machine: box, run: systemctl start cheat-demo.service}}]
"""


SCENARIO = cheat_scenario("cheat-probes", "One machine", "docker, lxd, nspawn", 5)
#: a preload library that makes the machine's own tools print each check's answer
PRELOAD_C = f"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void say(const char *text) {{ fputs(text, stdout); fflush(stdout); _exit(0); }}
__attribute__((constructor)) static void cheat(void) {{
    char comm[32] = {{0}};
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f || !fgets(comm, sizeof comm, f)) return;
    comm[strcspn(comm, "\\n")] = 0;
    if (!strcmp(comm, "cat")) say("42\\n");
    if (!strcmp(comm, "stat")) say("600\\n");
    if (!strcmp(comm, "dbus-uuidgen")) say("{WANT_ID}\\n");
    if (!strcmp(comm, "systemctl")) say("active\\nenabled\\n");
}}
"""
BACKENDS = [pytest.param(b, marks=getattr(pytest.mark, b)) for b in ("docker", "lxd", "nspawn")]
TASKS = ("file-read", "cat-run", "stat-run", "dbus", "service")


class Lab:
    """The lab of one backend: its machine, its checks, and a reset between cheats."""

    def __init__(self, path: Path, backend: str) -> None:
        self.store = Store()
        self.lab = lifecycle.prepare(str(path), student_id(), backend)
        lifecycle.up(self.lab, self.store, lifecycle.Silent())
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        self.record = record

    def sh(self, script: str) -> str:
        res = self.lab.exec(self.lab.ref, "box", ["sh", "-c", script], timeout=60)
        assert res.ok, res
        return str(res.stdout)

    def check(self) -> dict[str, Any]:
        report = lifecycle.check(self.lab, self.record, self.store)
        return {t.id: t for t in report.tasks}

    def messages(self, task: Any) -> str:
        return " ".join(c.message for c in task.checks)

    def reset(self) -> None:
        lifecycle.reset(self.lab, self.record, self.store, lifecycle.Silent())

    def down(self) -> None:
        teardown.down(self.lab.ref, [b.name for b in self.lab.backends], self.store)
        self.store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    engine(request.param)
    path = tmp_path_factory.mktemp("cheats") / "scenarios" / "cheat-probes.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    made = Lab(path, request.param)
    try:
        yield made
    finally:
        made.down()


@pytest.fixture
def fresh(lab: Lab) -> Lab:
    lab.reset()
    return lab


def solve_all(lab: Lab) -> None:
    for task in lab.lab.scenario.tasks:
        lifecycle.solve(lab.lab, lab.record, lab.store, [task.id])


def test_the_honest_answers_pass_so_the_checks_can_pass(fresh: Lab) -> None:
    assert not any(t.passed for t in fresh.check().values())
    solve_all(fresh)
    assert all(t.passed for t in fresh.check().values())


def test_a_replaced_cat_or_stat_fools_the_machine_not_the_check(fresh: Lab) -> None:
    fresh.sh("printf '7\\n' > /root/answer && chmod 644 /root/answer")
    fresh.sh("printf '#!/bin/sh\\necho 42\\n' > /usr/bin/cat && chmod 755 /usr/bin/cat")
    fresh.sh("printf '#!/bin/sh\\necho 600\\n' > /usr/bin/stat && chmod 755 /usr/bin/stat")
    assert fresh.sh("cat /root/answer; stat -c %a /root/answer").split() == ["42", "600"]
    tasks = fresh.check()
    assert not tasks["file-read"].passed and not tasks["cat-run"].passed
    assert not tasks["stat-run"].passed


def test_an_ld_so_preload_library_fools_every_dynamic_tool_not_the_check(
    fresh: Lab, tmp_path: Path
) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("the host has no C compiler to build the preload library")
    (tmp_path / "cheat.c").write_text(PRELOAD_C)
    lib = tmp_path / "cheat.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "cheat.c")], check=True)
    backend = fresh.lab.backend_for("box")
    backend.put_file(fresh.lab.ref, "box", "/usr/lib/cheat.so", lib.read_bytes(), 0o755)
    fresh.sh("printf '7\\n' > /root/answer && echo /usr/lib/cheat.so > /etc/ld.so.preload")
    said = fresh.sh("cat /root/answer; dbus-uuidgen --get; systemctl is-active cheat-demo")
    assert said.split() == ["42", WANT_ID, "active", "enabled"]
    tasks = fresh.check()
    assert not any(tasks[t].passed for t in TASKS)
    assert "/etc/ld.so.preload" in fresh.messages(tasks["dbus"])
    assert "/etc/ld.so.preload" in fresh.messages(tasks["service"])


def test_a_shim_in_usr_local_bin_and_bashrc_aliases_are_not_run(fresh: Lab) -> None:
    fresh.sh(
        f"printf '#!/bin/sh\\necho {WANT_ID}\\n' > /usr/local/bin/dbus-uuidgen && "
        "printf '#!/bin/sh\\necho 42\\n' > /usr/local/bin/cat && "
        "chmod 755 /usr/local/bin/dbus-uuidgen /usr/local/bin/cat && "
        "printf '%s\\n' \"alias cat='echo 42'\" \"stat() { echo 600; }\" "
        f"\"dbus-uuidgen() {{ echo {WANT_ID}; }}\" 'export ENV=/root/.bashrc' "
        "'export BASH_ENV=/root/.bashrc' >> /root/.bashrc && cp /root/.bashrc /root/.profile"
    )
    said = fresh.sh("PATH=/usr/local/bin:$PATH; dbus-uuidgen --get; cat /nothing")
    assert said.split() == [WANT_ID, "42"]
    tasks = fresh.check()
    assert not any(tasks[t].passed for t in ("cat-run", "stat-run", "dbus"))


def test_a_fake_dbus_uuidgen_or_systemctl_is_named_tampered(fresh: Lab) -> None:
    fresh.sh(
        f"printf '#!/bin/sh\\necho {WANT_ID}\\n' > /usr/bin/dbus-uuidgen && "
        "printf '#!/bin/sh\\necho active; echo enabled\\n' > /usr/bin/systemctl.new && "
        "chmod 755 /usr/bin/dbus-uuidgen /usr/bin/systemctl.new && "
        "mv /usr/bin/systemctl.new /usr/bin/systemctl"
    )
    assert fresh.sh("dbus-uuidgen --get").strip() == WANT_ID
    tasks = fresh.check()
    assert not tasks["dbus"].passed and not tasks["service"].passed
    msg = fresh.messages(tasks["dbus"])
    assert "tampered: /usr/bin/dbus-uuidgen differs from the image" in msg, msg
    assert "tampered: /usr/bin/systemctl differs from the image" in fresh.messages(tasks["service"])


def test_a_file_bound_over_the_kernel_s_view_fails_the_machine_s_probes(fresh: Lab) -> None:
    solve_all(fresh)
    # a cpuinfo of the student's (one that hides the hypervisor flag, say): what every
    # probe run in the machine reads could be as fake, so none of them counts
    fresh.sh(
        "grep -v '^flags' /proc/cpuinfo > /root/cpuinfo && mount --bind /root/cpuinfo /proc/cpuinfo"
    )
    try:
        assert "flags" not in fresh.sh("cat /proc/cpuinfo")
        tasks = fresh.check()
    finally:
        fresh.sh("umount /proc/cpuinfo")
    for task in ("cat-run", "stat-run", "dbus", "service"):
        assert not tasks[task].passed, task
        assert "is mounted over /proc/cpuinfo" in fresh.messages(tasks[task])
    assert tasks["file-read"].passed  # read by the engine, not in the machine
    assert all(t.passed for t in fresh.check().values())  # the engine's own mounts pass


def test_a_symlink_out_of_the_machine_reads_inside_it(fresh: Lab, tmp_path: Path) -> None:
    outside = tmp_path / "answer"
    outside.write_text("42\n")
    outside.chmod(0o644)
    tmp_path.chmod(0o755)
    fresh.sh(f"ln -s {outside} /root/answer")
    tasks = fresh.check()
    assert not tasks["file-read"].passed
    assert "not a regular file" in fresh.messages(tasks["file-read"])
    fresh.sh(f"rm /root/answer && ln -s ../../../../../../../..{outside} /root/answer")
    assert not fresh.check()["file-read"].passed


def test_a_fifo_as_the_answer_is_failed_in_bounded_time(fresh: Lab) -> None:
    fresh.sh("mkfifo /root/answer && (sh -c 'yes 42 > /root/answer' </dev/null >/dev/null 2>&1 &)")
    started = time.monotonic()
    tasks = fresh.check()
    assert time.monotonic() - started < 25  # each check's timeout is 5 s
    assert not tasks["file-read"].passed and not tasks["cat-run"].passed
    assert "not a regular file" in fresh.messages(tasks["file-read"])


def test_a_10_gb_sparse_answer_is_not_read(fresh: Lab) -> None:
    fresh.sh("truncate -s 10G /root/answer")
    started = time.monotonic()
    tasks = fresh.check()
    assert time.monotonic() - started < 25
    assert not tasks["file-read"].passed and not tasks["cat-run"].passed
    assert "10737418240 bytes" in fresh.messages(tasks["file-read"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_machine_id_clone_a_fake_dbus_uuidgen_does_not_earn_the_task(backend: str) -> None:
    """The library's own lab: a clone with a new /etc/machine-id but D-Bus's old copy, and a
    `dbus-uuidgen` that reads /etc/machine-id instead, so that both agree as the check asks."""
    engine(backend)
    store = Store()
    lab = lifecycle.prepare("machine-id-clone", student_id(), backend)
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        record = store.lab(lab.ref.key)
        assert record is not None
        cheat = (
            "od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' > /etc/machine-id && "
            "printf '#!/bin/sh\\ncat /etc/machine-id\\n' > /usr/bin/dbus-uuidgen"
        )
        res = lab.exec(lab.ref, "clone", ["sh", "-c", cheat], timeout=60)
        assert res.ok, res
        said = lab.exec(
            lab.ref,
            "clone",
            ["sh", "-c", 'test "$(dbus-uuidgen --get)" = "$(cat /etc/machine-id)"'],
            timeout=60,
        )
        assert said.ok, said  # the cheat answers the check's question as the check wants
        report = lifecycle.check(lab, record, store, ["unique-id"])
        checks = {c.name: c for t in report.tasks for c in t.checks}
        dbus = checks["D-Bus reports the clone's new ID"]
        assert not dbus.passed
        assert "tampered: /usr/bin/dbus-uuidgen differs from the image" in dbus.message
        assert checks["the clone and the template have different machine IDs"].passed
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
        store.close()
