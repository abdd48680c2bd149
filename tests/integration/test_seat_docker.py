"""The student's seat on the real Docker engine: a class of two, `guestlab serve`, the
students' links in headless Chromium and in a websocket client."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.conftest import engine, guestlab, student_id
from tests.integration.seat_helpers import (
    Served,
    browser,
    check_until,
    refused,
    screen,
    terminal,
    wait,
)

pytestmark = pytest.mark.docker

SCENARIO = "machine-id-inspect"


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """Two students' labs up; each one's link and token by student id."""
    engine("docker")
    ids = [student_id(), student_id()]
    roster = tmp_path_factory.mktemp("class") / "class.csv"
    roster.write_text(f"id,name,email\n{ids[0]},Ann,ann@example.org\n{ids[1]},Bob,\n")
    try:
        up = guestlab("class", "up", SCENARIO, "--roster", str(roster), "--parallel", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        links = guestlab("class", "links", SCENARIO, "--base-url", "http://x", "--format", "json")
        assert links.returncode == 0, links.stderr
        rows = {r["student"]: r for r in json.loads(links.stdout)}
        assert set(rows) == set(ids) and all(
            r["url"].startswith("http://x/s/") for r in rows.values()
        )
        yield rows
    finally:
        down = guestlab("class", "down", SCENARIO)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def served(klass: dict[str, dict[str, str]]) -> Iterator[Served]:
    server = Served.start()
    yield server
    server.stop()


def machine(student: str) -> Any:
    return docker.from_env().containers.get(f"gl-{SCENARIO}--{student}-guest")


def shells(student: str) -> list[str]:
    """The login shells running in a student's machine now."""
    out = machine(student).exec_run(["ps", "-eo", "args"]).output.decode()
    return [line for line in out.splitlines() if line.strip() == "/bin/bash -l"]


def test_a_student_works_in_the_browser_and_the_instructor_sees_it(
    klass: dict[str, dict[str, str]], served: Served, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ann = next(iter(klass))
    driver = browser(tmp_path)
    try:
        driver.get(served.base + "/s/" + klass[ann]["token"])
        assert driver.current_url == served.base + "/seat"  # the token left the address bar
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".xterm-rows"), what="the terminal")
        wait(lambda: any("root@guest" in r for r in screen(driver)), what="a prompt")
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        box.send_keys("hostname\n")
        # the machine's hostname, alone on a line of the screen (the DOM renderer's text)
        wait(lambda: any(r.strip() == "guest" for r in screen(driver)), what="the hostname")
        box.send_keys("dbus-uuidgen --get > /root/machine-id; echo saved-$((40+2))\n")
        wait(lambda: any(r.strip() == "saved-42" for r in screen(driver)), what="the answer saved")
        status = check_until(driver, "record-id", "pass", limit=60)
        assert driver.find_element(By.CSS_SELECTOR, status).text == "passed"
        seat = driver.current_window_handle
        # the instructor, in another tab while the student's terminal stays open
        driver.switch_to.new_window("tab")
        driver.get(f"{served.base}/class/{SCENARIO}?token={served.token}")
        cell = f'td.cell[data-student="{ann}"][data-task="record-id"]'
        online = f'td.online[data-student="{ann}"]'
        assert driver.find_element(By.CSS_SELECTOR, cell).get_attribute("data-state") == "pass"
        assert driver.find_element(By.CSS_SELECTOR, online).get_attribute("data-online") == "1"
        assert "guest" in driver.find_element(By.CSS_SELECTOR, online).text
        # watching over the shoulder: what the student types shows in the instructor's view
        driver.find_element(By.CSS_SELECTOR, f"{online} a").click()
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".watch-pane .xterm-rows"), what="watch")
        driver.switch_to.window(seat)
        driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(
            "echo over-$((1+1))\n"
        )
        driver.switch_to.window(driver.window_handles[-1])
        wait(lambda: any(r.strip() == "over-2" for r in screen(driver)), what="the watched output")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # no CSP violation, no script error
    finally:
        driver.quit()
    # closing the browser ends the shell in the machine, not only on the host
    wait(lambda: shells(ann) == [], limit=20, what="the in-machine shell to end")


def test_another_students_token_is_refused_over_http_and_the_websocket(
    klass: dict[str, dict[str, str]], served: Served
) -> None:
    ann, bob = list(klass)
    bob_token, ann_lab = klass[bob]["token"], f"{SCENARIO}--{ann}"
    # bob's token opens bob's lab, and nothing of ann's
    assert served.get("/api/me", bob_token)[1]["student"] == bob
    assert served.get(f"/class/{SCENARIO}/student/{ann}", bob_token)[0] == 403
    assert served.get(f"/api/class/{SCENARIO}", bob_token)[0] == 403
    assert refused(served.base, bob_token, f"/watch/{ann_lab}") == 403
    assert refused(served.base, None, "/api/terminal/guest") == 403
    assert refused(served.base, bob_token, "/api/terminal/template") == 403
    # a file made in ann's machine is not in the machine bob's token opens
    terminal(
        served.base,
        klass[ann]["token"],
        "guest",
        [(b"touch /root/ann-was-here; echo ok-$((1+1))\r", b"ok-2")],
    )
    out = terminal(
        served.base,
        bob_token,
        "guest",
        [(b"ls /root/ann-was-here; echo end-$((7*6))\r", b"end-42")],
    )
    assert "No such file" in out[0]
    assert machine(ann).exec_run(["test", "-e", "/root/ann-was-here"]).exit_code == 0


def test_a_machine_stopped_under_a_terminal_ends_it_and_others_are_served(
    klass: dict[str, dict[str, str]], served: Served
) -> None:
    import asyncio

    import websockets

    ann, bob = list(klass)

    async def go() -> str:
        url = served.base.replace("http://", "ws://") + "/api/terminal/guest"
        headers = {"Authorization": f"Bearer {klass[bob]['token']}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(b"echo up-$((2+2))\r")
            out = b""
            while b"up-4" not in out:
                out += await asyncio.wait_for(ws.recv(), 20)
            await asyncio.to_thread(machine(bob).stop, timeout=2)
            while True:
                msg = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(msg, str):
                    return json.loads(msg)["message"]

    sentence = asyncio.run(go())
    assert sentence.startswith("The shell in guest ended (exit status")
    status, me = served.get("/api/me", klass[ann]["token"])  # the server serves the others
    assert status == 200 and me["student"] == ann
    out = terminal(
        served.base, klass[ann]["token"], "guest", [(b"echo still-$((3+3))\r", b"still-6")]
    )
    assert "still-6" in out[0]
    # Reset through the API brings the stopped machine back as it started
    status, body = served.post("/api/reset", klass[bob]["token"])
    assert status == 200 and body == {"reset": True}, body
    assert machine(bob).status == "running"
    out = terminal(
        served.base, klass[bob]["token"], "guest", [(b"echo back-$((4+4))\r", b"back-8")]
    )
    assert "back-8" in out[0]


def test_the_api_check_is_the_clis_report_recorded_as_the_students_own(
    klass: dict[str, dict[str, str]], served: Served
) -> None:
    ann = next(iter(klass))

    def attempts() -> int:
        status, book = served.get(f"/api/class/{SCENARIO}", served.token)
        assert status == 200
        return next(r["attempts"] for r in book["students"] if r["student"] == ann)

    before = attempts()
    status, report = served.post("/api/check", klass[ann]["token"])
    assert status == 200, report
    assert served.post("/api/check", klass[ann]["token"])[0] == 429  # within 2 s: nothing ran
    assert attempts() == before + 1  # the student's own attempt, on the instructor's grid
    cli = guestlab("check", SCENARIO, "--student", ann, "--format", "json")
    assert set(report) == set(json.loads(cli.stdout)) and report["student"] == ann
    assert [t["id"] for t in report["tasks"]] == [t["id"] for t in json.loads(cli.stdout)["tasks"]]


def test_links_survive_a_killed_server_and_ctrl_c_ends_every_terminal(
    klass: dict[str, dict[str, str]],
) -> None:
    ann = next(iter(klass))
    first = Served.start()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    again = Served.start()
    try:
        status, me = again.get("/api/me", klass[ann]["token"])
        assert status == 200 and me["student"] == ann  # the same link, a new process

        def hold() -> None:  # a terminal held open until the server goes away
            with contextlib.suppress(Exception):
                terminal(
                    again.base, klass[ann]["token"], "guest", [(b"sleep 600\r", b"never")], 120
                )

        held = threading.Thread(target=hold, daemon=True)
        held.start()
        wait(lambda: any("sleep 600" in a for a in sleeps(ann)), what="the held terminal")
    finally:
        err = again.stop(signal.SIGINT)
    assert "Traceback" not in err, err
    held.join(timeout=30)
    wait(lambda: not sleeps(ann), limit=20, what="Ctrl-C to end the terminal's processes")


def sleeps(student: str) -> list[str]:
    out = machine(student).exec_run(["ps", "-eo", "args"]).output.decode()
    return [line for line in out.splitlines() if line.startswith("sleep")]
