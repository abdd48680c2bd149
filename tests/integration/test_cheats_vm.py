"""On a real VM (one boot: they are slow under emulation), a replaced `cat` and `stat` and a
FIFO as the checked file do not pass: the probes run under the host's busybox there too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id

pytestmark = pytest.mark.vagrant

ANSWER = "printf '42\\\\n' > /root/answer && chmod 600 /root/answer"
SCENARIO = f"""\
apiVersion: guestlab/v1
kind: Scenario
metadata:
  id: cheat-probes-vm
  title: Answers a cheat plants, in a VM
  level: beginner
description: One VM; each task's answer can be faked by root in it.
backends: [vagrant]
machines:
  - name: box
    image: debian-12-systemd
tasks:
  - id: file-read
    title: /root/answer says 42
    checks:
      - {{machine: box, file: {{path: /root/answer, matches: '^42\\s*$'}}, timeout: 10}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
  - id: cat-run
    title: cat says 42
    checks:
      - {{machine: box, run: 'test "$(cat /root/answer)" = 42', timeout: 10}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
  - id: stat-run
    title: /root/answer has mode 600
    checks:
      - {{machine: box, run: 'test "$(stat -c %a /root/answer)" = 600', timeout: 10}}
    solution: [{{machine: box, run: "{ANSWER}"}}]
"""


def test_a_vm_s_replaced_binaries_and_a_fifo_do_not_pass(tmp_path: Path) -> None:
    engine("vagrant")
    path = tmp_path / "scenarios" / "cheat-probes-vm.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    store = Store()
    lab = lifecycle.prepare(str(path), student_id(), "vagrant")

    def sh(script: str) -> str:
        res = lab.exec(lab.ref, "box", ["sh", "-c", script], timeout=60)
        assert res.ok, res
        return str(res.stdout)

    def passed() -> dict[str, bool]:
        return {t.id: t.passed for t in lifecycle.check(lab, record, store).tasks}

    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        found = store.lab(lab.ref.key)
        assert found is not None
        record = found
        lifecycle.solve(lab, record, store)
        assert all(passed().values())  # the checks can pass
        sh(
            "cp -p /usr/bin/cat /usr/bin/stat /root/ && "
            "printf '7\\n' > /root/answer && chmod 644 /root/answer && "
            "printf '#!/bin/sh\\necho 42\\n' > /usr/bin/cat.new && "
            "printf '#!/bin/sh\\necho 600\\n' > /usr/bin/stat.new && "
            "chmod 755 /usr/bin/cat.new /usr/bin/stat.new && "
            "mv /usr/bin/cat.new /usr/bin/cat && mv /usr/bin/stat.new /usr/bin/stat"
        )
        # the cheat works for the VM's own tools (asked by exit code: the VM's exec prints
        # its output through `cat`, which now says 42 to everything)
        sh('test "$(cat /root/answer)" = 42 && test "$(stat -c %a /root/answer)" = 600')
        assert not any(passed().values())
        sh("mv /root/cat /root/stat /usr/bin/")  # now the FIFO alone
        sh(
            "rm /root/answer && mkfifo /root/answer && (sh -c 'yes 42 > /root/answer' </dev/null >/dev/null 2>&1 &)"
        )
        started = time.monotonic()
        report = lifecycle.check(lab, record, store)
        assert time.monotonic() - started < 60
        tasks = {t.id: t for t in report.tasks}
        assert not any(t.passed for t in tasks.values())
        assert "not a regular file" in tasks["file-read"].checks[0].message
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
        store.close()
