"""A `guestlab serve` process for seat tests, and a terminal driven without a browser."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str  # http://127.0.0.1:PORT
    token: str  # the instructor's

    @classmethod
    def start(cls, *args: str) -> Served:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "serve",
                "--port",
                "0",
                "--access-log",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Dashboard: http://127.0.0.1:"), line + proc.stderr.read()
        url, _, token = line.split(" ", 1)[1].strip().partition("/?token=")
        return cls(proc, url, token)

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Stop it (Ctrl-C by default); what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        return _open(req)

    def post(self, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=json.dumps(body or {}).encode())
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Content-Type", "application/json")
        return _open(req, timeout=120)


def _open(req: urllib.request.Request, timeout: float = 30) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            body = res.read().decode()
            status = res.status
    except urllib.error.HTTPError as e:
        body, status = e.read().decode(), e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


async def _session(
    base: str, token: str, machine: str, steps: list[tuple[bytes, bytes]], timeout: float
) -> list[str]:
    import websockets

    url = base.replace("http://", "ws://") + f"/api/terminal/{machine}?cols=120&rows=40"
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[str] = []
    async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
        for send, expect in steps:
            await ws.send(send)
            out = b""
            while expect not in out:
                msg = await asyncio.wait_for(ws.recv(), timeout)
                out += msg if isinstance(msg, bytes) else msg.encode()
            seen.append(out.decode(errors="replace"))
    return seen


def terminal(
    base: str, token: str, machine: str, steps: list[tuple[bytes, bytes]], timeout: float = 30
) -> list[str]:
    """Type each `send` and read until its `expect`; the outputs, one per step."""
    return asyncio.run(_session(base, token, machine, steps, timeout))


def refused(base: str, token: str | None, path: str) -> int | None:
    """The HTTP status that refused a websocket handshake, or None if it was accepted."""
    import websockets

    async def go() -> int | None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with websockets.connect(
                base.replace("http://", "ws://") + path, additional_headers=headers
            ) as ws:
                await ws.close()
                return None
        except websockets.exceptions.InvalidStatus as e:
            return e.response.status_code

    return asyncio.run(go())


def chromium() -> tuple[str, str]:
    """The paths of Debian's chromium and chromedriver; skip, or fail under CI, without them."""
    import shutil

    import pytest

    from tests.integration.conftest import IN_CI

    path = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "the selenium package"
    else:
        missing = "" if Path(path).exists() and Path(driver).exists() else "chromium"
    if missing:
        reason = f"{missing} is not installed (scripts/setup/browser.sh, pip install selenium)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return path, driver


def browser(tmp: Path) -> Any:
    """Headless Chromium under Selenium (Debian's chromium and chromedriver), or skip."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    path, driver = chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = path
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
        f"--user-data-dir={tmp / 'chromium'}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(driver))


def screen(driver: Any) -> list[str]:
    """The rows an xterm.js terminal shows in the page, as text."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.xterm-rows > div'), r => r.textContent);"
    )


def wait(predicate: Any, limit: float = 60, what: str = "") -> Any:
    """Poll `predicate` until it gives something true; fail naming `what` after `limit` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def check_until(driver: Any, task: str, state: str, limit: float = 60) -> str:
    """Press the seat's Check and wait until `task` shows `state`; its status selector."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "check").click()
    status = f'.status[data-task="{task}"]'
    wait(
        lambda: driver.find_element(By.CSS_SELECTOR, status).get_attribute("data-state") == state,
        limit=limit,
        what=f"{task} to be {state}",
    )
    return status
