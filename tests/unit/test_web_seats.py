"""The students' seats on a fake store (Starlette's TestClient): links, cookies, the API,
the terminal socket's refusals and limits. No engine: the lab's verbs and shell are
replaced where a test needs them to run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from orchestrator.classroom.store import ClassStore
from orchestrator.credentials import Seats
from orchestrator.state import Store
from orchestrator.web import seats, terminals
from orchestrator.web.app import build_app
from orchestrator.web.config import COOKIE, MAX_MESSAGE, ServeConfig

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "machine-id-inspect"
INSTRUCTOR = "instructor-token"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "state.db")
    ClassStore(db.db).put_class(
        SCENARIO, scenario_path="x", backend="docker", memory=None, expires=None, tasks=[]
    )
    for i, student in enumerate(("ann", "bob")):
        key = f"{SCENARIO}--{student}"
        db.put_lab(
            key,
            scenario=SCENARIO,
            student=student,
            backends=["docker"],
            scenario_path=str(ROOT / "scenarios" / f"{SCENARIO}.yaml"),
            params={"machine_id": "0" * 32},
            status="up",
        )
        ClassStore(db.db).put_member(SCENARIO, student, student.title(), "", key, i)
    yield db
    db.close()


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    return {s: Seats(store.db).issue(f"{SCENARIO}--{s}") for s in ("ann", "bob")}


@pytest.fixture
def logged() -> list[str]:
    return []


@pytest.fixture
def client(store: Store, logged: list[str]) -> Iterator[TestClient]:
    config = ServeConfig(db_path=store.path, token=INSTRUCTOR, log=logged.append)
    config.idle = 600
    with TestClient(build_app(config), base_url="http://testserver") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_link_becomes_a_strict_cookie_and_a_clean_url(
    client: TestClient, tokens: dict[str, str]
) -> None:
    res = client.get(f"/s/{tokens['ann']}", follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/seat"
    cookie = res.headers["set-cookie"]
    assert f"{COOKIE}={tokens['ann']}" in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    page = client.get("/seat")
    assert page.status_code == 200
    assert "Find a guest&#39;s machine ID" in page.text or "machine ID" in page.text
    assert 'data-machine="guest"' in page.text  # a terminal tab per machine
    assert tokens["ann"] not in page.text  # the token stays in the cookie only
    assert "script-src 'nonce-" in page.headers["content-security-policy"]


def test_a_wrong_or_rotated_token_opens_nothing(
    client: TestClient, store: Store, tokens: dict[str, str]
) -> None:
    assert client.get("/s/abcdefghij.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status_code == 403
    assert client.get("/api/me", headers=bearer("nonsense")).status_code == 403
    Seats(store.db).rotate(f"{SCENARIO}--ann")
    assert client.get(f"/s/{tokens['ann']}", follow_redirects=False).status_code == 403
    assert client.get("/api/me", headers=bearer(tokens["ann"])).status_code == 403
    client.cookies.set(COOKIE, tokens["ann"])
    assert client.get("/seat").status_code == 403  # a cookie of a rotated token too


def test_a_token_opens_its_own_lab_only(client: TestClient, tokens: dict[str, str]) -> None:
    me = client.get("/api/me", headers=bearer(tokens["bob"])).json()
    assert me["student"] == "bob" and me["machines"] == ["guest"]
    assert [t["state"] for t in me["tasks"]] == ["unchecked"] * len(me["tasks"])
    # the lab comes from the token, never from the request: no way to name ann's
    for path in (
        "/",
        "/class/machine-id-inspect",
        "/api/class/machine-id-inspect",
        "/class/machine-id-inspect/student/ann",
        "/class/machine-id-inspect/student/ann/watch",
    ):
        assert client.get(path, headers=bearer(tokens["bob"])).status_code == 403, path
        assert client.get(path + f"?token={tokens['bob']}").status_code == 403, path


def test_check_and_hint_are_limited_per_student(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def fake_check(config: Any, seat: Any, lang: str, body: Any) -> dict[str, Any]:
        ran.append(seat.student)
        return {"scenario": SCENARIO, "student": seat.student, "tasks": [], "score": 0}

    monkeypatch.setitem(seats.VERBS, "check", fake_check)
    assert client.post("/api/check", headers=bearer(tokens["ann"])).status_code == 200
    second = client.post("/api/check", headers=bearer(tokens["ann"]))
    assert second.status_code == 429 and second.headers["retry-after"] == "2"
    assert client.post("/api/check", headers=bearer(tokens["bob"])).status_code == 200
    assert ran == ["ann", "bob"]  # the refused check never ran
    assert client.post("/api/check").status_code == 403
    assert client.post("/api/hint", headers=bearer(tokens["ann"]), json={}).status_code == 400


def test_hints_come_in_the_students_language(client: TestClient, tokens: dict[str, str]) -> None:
    res = client.post("/api/hint", headers=bearer(tokens["ann"]), json={"task": "record-id"})
    assert res.status_code == 200
    hint = res.json()
    assert hint["n"] == 1 and "dbus-uuidgen" in hint["text"]
    again = client.post("/api/hint", headers=bearer(tokens["ann"]), json={"task": "nope"})
    assert again.status_code == 429  # limited before it is even looked at
    time.sleep(2.1)
    unknown = client.post("/api/hint", headers=bearer(tokens["ann"]), json={"task": "nope"})
    assert unknown.status_code == 400 and "no task nope" in unknown.json()["error"]


def test_the_page_language(client: TestClient, tokens: dict[str, str]) -> None:
    client.cookies.set(COOKIE, tokens["ann"])
    assert ">Check<" in client.get("/seat").text
    assert ">Verificar<" in client.get("/seat?lang=pt-BR").text
    pt = client.get("/seat", headers={"Accept-Language": "fr;q=0.9, pt;q=0.8, en;q=0.1"})
    assert ">Verificar<" in pt.text and 'lang="pt-BR"' in pt.text
    assert ">Check<" in client.get("/seat", headers={"Accept-Language": "de, fr"}).text
    assert ">Check<" in client.get("/seat?lang=xx", headers={"Accept-Language": "en"}).text


def test_the_seat_speaks_the_language_its_lab_was_brought_up_in(
    client: TestClient, tokens: dict[str, str], store: Store
) -> None:
    from orchestrator.backends.contract import LabRef

    store.remember_language(LabRef(SCENARIO, "ann"), "pt-BR")
    client.cookies.set(COOKIE, tokens["ann"])
    english_browser = {"Accept-Language": "en-US,en;q=0.9"}
    assert ">Verificar<" in client.get("/seat", headers=english_browser).text
    assert ">Check<" in client.get("/seat?lang=en", headers=english_browser).text
    refused = client.post("/api/hint", content=b"[]", headers=english_browser)
    assert refused.status_code == 400  # a script's malformed request: not translated
    client.cookies.set(COOKIE, tokens["bob"])  # bob's lab remembers no language
    assert ">Check<" in client.get("/seat", headers=english_browser).text


def test_markdown_with_raw_html_is_inert() -> None:
    from orchestrator.web.rendering import markdown

    html = markdown(
        'Run `ls`\n\n<script>alert(1)</script> <img src=x onerror="alert(2)">\n\n'
        "[x](javascript:alert(3))"
    )
    assert "<code>ls</code>" in html
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


# -- the terminal socket -------------------------------------------------------------------
def test_a_socket_without_a_cookie_is_refused_and_logged(
    client: TestClient, logged: list[str]
) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect("/api/terminal/guest"):
        pass
    assert exc.value.code == 1008
    assert any("refused: a terminal socket with no student's cookie" in line for line in logged)
    assert any("WS /api/terminal/guest 403" in line for line in logged)


def test_a_machine_the_lab_lacks_is_refused_and_nothing_runs(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[Any] = []
    monkeypatch.setattr(terminals.PtyProcess, "spawn", lambda *a, **k: spawned.append(a))
    for machine in ("clone", "guest;id", "template"):
        with (
            pytest.raises(WebSocketDisconnect) as exc,
            client.websocket_connect(f"/api/terminal/{machine}", headers=bearer(tokens["ann"])),
        ):
            pass
        assert exc.value.code == 1008
    assert spawned == []


def test_another_sites_page_cannot_open_a_terminal(
    client: TestClient, tokens: dict[str, str]
) -> None:
    client.cookies.set(COOKIE, tokens["ann"])
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        client.websocket_connect("/api/terminal/guest", headers={"Origin": "http://evil.example"}),
    ):
        pass
    assert exc.value.code == 1008


@pytest.fixture
def cat_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal that runs `cat` on the host instead of a machine's shell."""

    def argv(config: Any, seat: Any, machine: str, marker: str) -> tuple[list[str], Any]:
        if machine != "guest":
            from orchestrator.web.access import SeatRefused

            raise SeatRefused(f"this lab has no machine {machine}")
        return ["cat"], None

    monkeypatch.setattr(terminals, "_argv", argv)


def read_until(ws: Any, needle: bytes) -> bytes:
    seen = b""
    while needle not in seen:
        seen += ws.receive_bytes()
    return seen


@pytest.mark.usefixtures("cat_shell")
def test_keystrokes_echo_and_an_oversized_frame_closes_1009(
    client: TestClient, tokens: dict[str, str], logged: list[str]
) -> None:
    with client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["ann"])) as ws:
        ws.send_text(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        ws.send_bytes(b"hello\r")
        assert b"hello" in read_until(ws, b"hello")
        ws.send_bytes(b"x" * (MAX_MESSAGE + 1))
        message = ws.receive()
        while message["type"] == "websocket.send":  # output still on its way
            message = ws.receive()
        assert message["type"] == "websocket.close" and message["code"] == 1009
    assert any("refused: a terminal message of" in line for line in logged)


@pytest.mark.usefixtures("cat_shell")
def test_at_most_max_terminals_per_student(
    store: Store, tokens: dict[str, str], logged: list[str]
) -> None:
    config = ServeConfig(db_path=store.path, token=INSTRUCTOR, max_terminals=1)
    with (
        TestClient(build_app(config)) as client,
        client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["ann"])) as one,
    ):
        one.send_bytes(b"a\r")
        read_until(one, b"a")
        with client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["ann"])) as two:
            closed = json.loads(two.receive_text())
            assert "1 terminals open already" in closed["message"]
        with client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["bob"])) as bob:
            bob.send_bytes(b"b\r")
            read_until(bob, b"b")  # another student is not counted against ann


@pytest.mark.usefixtures("cat_shell")
def test_an_idle_terminal_closes_with_a_sentence(store: Store, tokens: dict[str, str]) -> None:
    config = ServeConfig(db_path=store.path, token=INSTRUCTOR, idle=0.5)
    with (
        TestClient(build_app(config)) as client,
        client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["ann"])) as ws,
    ):
        closed = json.loads(ws.receive_text())
        assert closed["type"] == "closed" and "without a keystroke" in closed["message"]


@pytest.mark.usefixtures("cat_shell")
def test_the_instructor_watches_and_the_grid_shows_who_is_connected(
    client: TestClient, tokens: dict[str, str]
) -> None:
    with client.websocket_connect("/api/terminal/guest", headers=bearer(tokens["ann"])) as ws:
        ws.send_bytes(b"first\r")
        read_until(ws, b"first")
        book = client.get(f"/api/class/{SCENARIO}", headers=bearer(INSTRUCTOR)).json()
        online = {r["student"]: [s["machine"] for s in r["connected"]] for r in book["students"]}
        assert online == {"ann": ["guest"], "bob": []}
        with (
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect(f"/watch/{SCENARIO}--ann", headers=bearer(tokens["ann"])),
        ):
            pass  # a student cannot watch, not even themselves
        with client.websocket_connect(f"/watch/{SCENARIO}--ann?token={INSTRUCTOR}") as watch:
            opened = json.loads(watch.receive_text())
            assert opened["type"] == "open" and opened["machine"] == "guest"
            assert b"first" in watch.receive_bytes()[4:]  # what was on the screen already
            ws.send_bytes(b"second\r")
            read_until(ws, b"second")
            assert b"second" in read_until(watch, b"second")
    book = client.get(f"/api/class/{SCENARIO}", headers=bearer(INSTRUCTOR)).json()
    assert all(r["connected"] == [] for r in book["students"])


def test_the_vendor_files_are_served_or_their_absence_explained(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from orchestrator.web import static_files

    res = client.get("/static/vendor/nope.js")
    assert res.status_code == 404
    monkeypatch.setitem(static_files.VENDOR, "xterm.js", tmp_path / "missing.js")
    res = client.get("/static/vendor/xterm.js")
    assert res.status_code == 404 and "scripts/setup/seat.sh" in res.text
    assert not static_files.vendor_ready()


def test_a_link_from_a_mail_gets_its_strict_cookie_on_a_same_site_reload(
    client: TestClient,
) -> None:
    # a navigation another site started withholds the Strict cookie: reload once
    cross = client.get("/seat", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 200 and "/static/reload.js" in cross.text
    plain = client.get("/seat")
    assert plain.status_code == 403 and "reload.js" not in plain.text
    assert "personal link" in plain.text


def test_a_hanging_check_holds_up_nobody_else(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    def slow_check(config: Any, seat: Any, lang: str, body: Any) -> dict[str, Any]:
        time.sleep(3)  # an engine that does not answer
        return {"student": seat.student}

    monkeypatch.setitem(seats.VERBS, "check", slow_check)
    hung = threading.Thread(
        target=lambda: client.post("/api/check", headers=bearer(tokens["ann"])), daemon=True
    )
    hung.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert client.get("/api/me", headers=bearer(tokens["bob"])).status_code == 200
    assert client.get(f"/api/class/{SCENARIO}", headers=bearer(INSTRUCTOR)).status_code == 200
    assert time.monotonic() - started < 2 and hung.is_alive()
    hung.join(timeout=10)
