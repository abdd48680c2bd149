"""`class check` with one hostile lab: the others are graded, the hostile one gets a sentence."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import backends
from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.classroom import bulk, copies
from orchestrator.state import Store
from tests.unit.classroom_fakes import SCENARIO, FakeBackend, framed, roster, wired

HOSTILE = "[/nope] \x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[2J\x9b1m done"


class HostileBackend(FakeBackend):
    """mallory's machines print escapes everywhere; trudy's exec fails in a way no one
    foresaw (as a database refusing a huge value once did); eve's machine ID is 1 MB."""

    hostile = False  # from the end of `up`: their students turn on them once they have root
    # an engine whose own mounts are not known: no kernel-view probe joins the batch, so
    # what mallory's machines print reaches the check messages, where it must be made safe
    virtualization = "hostile"

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        if not self.hostile:
            return super().exec(lab, machine, argv, timeout=timeout)
        if lab.student == "trudy" and "/etc/ssh/" in argv[2]:
            raise RuntimeError("string or blob too big")
        if lab.student == "eve" and argv[2] == copies.read_script("/etc/machine-id"):
            return ExecResult(0, framed("/etc/machine-id", b"f" * 5000))
        if lab.student == "mallory":
            return ExecResult(1, HOSTILE, HOSTILE)
        return super().exec(lab, machine, argv, timeout=timeout)


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Store]:
    backend = HostileBackend()
    monkeypatch.setitem(backends._cache, "docker", backend)
    monkeypatch.setattr(bulk, "host_memory", lambda _b: (64 * 1024**3, "this host"))
    monkeypatch.setattr(bulk, "inotify_limit", lambda: (0, 0))
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    # no image manifest: the fake's machines print the same hostile text for every probe
    monkeypatch.setenv("GUESTLAB_IMAGES", str(tmp_path / "images"))
    store = Store()
    p = bulk.plan(SCENARIO, roster("ann", "mallory", "trudy", "eve"), "docker", None)
    assert all(o.ok for o in bulk.up(p, store))
    backend.hostile = True
    yield store
    store.close()


def test_one_hostile_lab_never_fails_the_class(hostile: Store) -> None:
    book = bulk.check(hostile, SCENARIO)
    rows = {r["student"]: r for r in book["students"]}
    assert rows["ann"]["error"] == "" and rows["ann"]["max_total"] == 5
    assert all(c["state"] == "fail" for c in rows["ann"]["tasks"].values())  # graded, as is
    assert rows["trudy"]["error"] == "" and rows["trudy"]["max_total"] == 5  # graded too
    assert [c["problem"] for c in rows["trudy"]["copies"]] == [
        "copy detection failed: internal error: RuntimeError: string or blob too big"
    ]
    assert rows["mallory"]["error"] == ""
    messages = [m for c in rows["mallory"]["tasks"].values() for m in c["messages"]]
    assert messages and all("\x1b" not in m and "\x9b" not in m for m in messages)
    assert [c["problem"] for c in rows["eve"]["copies"]] == [
        "machine-id of template: /etc/machine-id is larger than 4 KiB",
        "machine-id of clone: /etc/machine-id is larger than 4 KiB",
    ]


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "junit"])
def test_every_format_of_a_hostile_class_check_is_clean(
    hostile: Store, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli import console

    # the console's width is fixed when it first measures its terminal (none under xdist)
    monkeypatch.setattr(console.out, "_width", 500)
    result = CliRunner(env={"COLUMNS": "500"}).invoke(
        wired, ["class", "check", SCENARIO, "--format", fmt]
    )
    assert result.exit_code == 0, result.output  # every lab could be checked
    out = result.stdout
    assert "\x1b" not in out and "\x9b" not in out and "pwned" not in out
    if fmt == "csv":
        rows = {r["student"]: r for r in csv.DictReader(io.StringIO(out))}
        assert set(rows) == {"ann", "mallory", "trudy", "eve"} and rows["ann"]["total"] == "0"
        assert "larger than 4 KiB" in rows["eve"]["copy_flags"]
    elif fmt == "json":
        rows = {r["student"]: r for r in json.loads(out)["students"]}
        assert len(rows) == 4
        messages = [m for c in rows["mallory"]["tasks"].values() for m in c["messages"]]
        assert any("[/nope]" in m and m.endswith("done") for m in messages), messages
    elif fmt == "junit":
        root = ET.fromstring(out.split("?>", 1)[1])
        assert len(root.findall("testsuite")) == 4
    else:
        assert "mallory" in out and "not compared: machine-id of clone could not be read" in out
        assert "copy detection failed" in out
