"""Self-enrolment on the real Docker engine in headless Chromium: a class link, a name
typed, a lab from the pool with the student's own seat, a terminal, a check passing, the
instructor's grid showing the student; a name already taken is refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import engine, guestlab, student_id
from tests.integration.seat_helpers import Served, browser, check_until, screen, wait
from tests.integration.test_pool_docker import drain, ok, scenario

pytestmark = pytest.mark.docker


def post_name(url: str, name: str) -> int:
    req = urllib.request.Request(url, data=f"student={name}".encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_student_enrols_by_name_and_passes_a_check_in_the_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    engine("docker")
    sid = "pool-enrol"
    path = scenario(tmp_path, sid)
    ok("pool", "fill", path, "--size", "1", "--backend", "docker")
    server = Served.start()
    name = student_id()
    driver = browser(tmp_path)
    try:
        link = ok("class", "enrol", path, "--base-url", server.base, "--cap", "2").strip()
        assert link.startswith(server.base + "/join/")
        driver.get(link)
        driver.find_element(By.ID, "student").send_keys(name)
        driver.find_element(By.ID, "join").click()
        wait(lambda: driver.current_url == server.base + "/seat", what="the seat")
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".xterm-rows"), what="the terminal")
        wait(lambda: any("#" in r for r in screen(driver)), what="a prompt")
        box = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        box.send_keys("cp /etc/code /root/answer; echo done-$((40+2))\n")
        wait(lambda: any(r.strip() == "done-42" for r in screen(driver)), what="the answer")
        check_until(driver, "answer", "pass")
        record = guestlab("status", sid, "--student", name, "--format", "json")
        assert "--pool-" in record.stdout  # the lab came from the pool
        driver.get(f"{server.base}/class/{sid}?token={server.token}")
        cell = f'td.cell[data-student="{name}"][data-task="answer"]'
        assert driver.find_element(By.CSS_SELECTOR, cell).get_attribute("data-state") == "pass"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        # the same name again (another case) is refused, never given that student's seat
        assert post_name(link, name.upper()) == 400
        assert post_name(server.base + "/join/not-the-secret", "someone") == 403
    finally:
        driver.quit()
        server.stop()
        drain(sid)
        ok("class", "down", sid)
