"""The doors speak the student's language: the SSH door's refusals (before login in the
door's, after it in the lab's), the web's plain-text 403/404, the terminal's sentences, and
the words the dashboard's scripts show, which come from the page."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator import messages
from orchestrator.backends.contract import LabRef
from orchestrator.classroom.store import ClassStore
from orchestrator.credentials import Seats
from orchestrator.state import Store
from orchestrator.web import i18n, terminals
from orchestrator.web.access import Seat
from orchestrator.web.app import build_app
from orchestrator.web.config import ServeConfig
from orchestrator.web.presence import Presence
from orchestrator.web.ssh_auth import Login
from orchestrator.web.ssh_door import Door, DoorLimits, DoorServer
from orchestrator.web.ssh_session import DoorSession, Opened
from tests.english import english_in

INSTRUCTOR = "instructor-token"
STATIC = Path(__file__).resolve().parents[2] / "orchestrator" / "web" / "static"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    ClassStore(s.db).put_class(
        "one", scenario_path="x", backend="docker", memory=None, expires=None, tasks=[]
    )
    for scenario, student in [("one", "alice"), ("two", "alice"), ("one", "bob")]:
        s.put_lab(
            f"{scenario}--{student}",
            scenario=scenario,
            student=student,
            backends=["docker"],
            scenario_path=f"/{scenario}.yaml",
            params={},
            status="up",
        )
    ClassStore(s.db).put_member("one", "bob", "Bob", "", "one--bob", 0)
    s.remember_language(LabRef("one", "bob"), "pt-BR")  # bob brought his lab up in pt-BR
    yield s
    s.close()
    messages.use(messages.ENGLISH)


# -- the SSH door -------------------------------------------------------------------------------
class FakeConnection:
    """What DoorServer asks of asyncssh's connection: the banners it sends are kept."""

    def __init__(self) -> None:
        self.banners: list[tuple[str, str]] = []

    def get_extra_info(self, name: str) -> Any:
        return ("10.0.0.9", 2222)

    def send_auth_banner(self, msg: str, lang: str = "en") -> None:
        self.banners.append((msg, lang))

    def close(self) -> None:
        pass


def door_server(store: Store, lang: str, **limits: Any) -> tuple[DoorServer, FakeConnection]:
    door = Door(store.path, Presence(), DoorLimits(**limits))
    door.lang = lang
    server, conn = DoorServer(door), FakeConnection()
    server.connection_made(conn)  # type: ignore[arg-type]
    return server, conn


def test_a_bad_user_name_is_told_in_the_doors_language(store: Store) -> None:
    server, conn = door_server(store, "pt-BR")
    server.begin_auth("a/b")
    ((banner, lang),) = conn.banners
    assert lang == "pt-BR" and banner.startswith("guestlab: 'a/b' não é um nome de usuário")
    assert "ALUNO+MÁQUINA" in banner and english_in(banner) == []


def test_a_wrong_password_is_told_and_the_last_try_closes(store: Store) -> None:
    Seats(store.db)
    server, conn = door_server(store, "pt-BR", auth_tries=2)
    for _ in range(2):
        assert not asyncio.run(server.validate_password("alice", "not-a-token"))
    said = [banner for banner, _lang in conn.banners]
    assert said[0] == (
        "guestlab: nenhum laboratório de alice abre com esta senha (a senha é o token do seu"
        " link pessoal)\r\n"
    )
    assert said[-1] == "guestlab: tentativas de login demais falharam: a conexão foi fechada\r\n"
    assert english_in(" ".join(said)) == []


def test_after_login_the_door_speaks_the_labs_language(store: Store) -> None:
    token = Seats(store.db).issue("one--bob")
    server, conn = door_server(store, "en")  # the serve process speaks English
    assert asyncio.run(server.validate_password("bob", token))
    session = server.session_requested()
    assert isinstance(session, DoorSession) and session.lang == "pt-BR"
    assert conn.banners == []


class FakeChannel:
    def __init__(self) -> None:
        self.stderr = b""
        self.status: int | None = None

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data

    def exit(self, status: int) -> None:
        self.status = status


class FakeOpener:
    """A door whose lab holds `open` SSH sessions already, at most `max_sessions`."""

    def __init__(self, open_sessions: int, max_sessions: int) -> None:
        self.presence = Presence()
        self.max_sessions = max_sessions
        for _ in range(open_sessions):
            self.presence.enter("one--bob", "m", "ssh")

    async def open(self, seat: Seat, machine: str | None, argv: Sequence[str], tty: bool) -> Opened:
        return Opened(["true"], "m", None, None)  # type: ignore[arg-type]

    def end_in_machine(self, opened: Opened, marker: str) -> None:
        pass


def refusal(seats: list[Seat], door: FakeOpener) -> str:
    session = DoorSession(door, seats, Login(seats[0].student, None), "'bob'", "pt-BR")
    session.chan = FakeChannel()  # type: ignore[assignment]
    asyncio.run(session.run())
    assert session.chan.status == 1  # type: ignore[attr-defined]
    return session.chan.stderr.decode()  # type: ignore[attr-defined]


def test_a_refusal_after_login_is_in_the_labs_language() -> None:
    two = [Seat("one--bob", "one", "bob"), Seat("two--bob", "two", "bob")]
    said = refusal(two, FakeOpener(0, 4))
    assert said.startswith("guestlab: bob tem laboratórios de 2 cenários (faça login como")
    full = refusal(two[:1], FakeOpener(2, 2))
    assert full == "guestlab: no máximo 2 sessões SSH ao mesmo tempo por laboratório\n"
    assert english_in(said + full) == []
    assert messages.current() == messages.ENGLISH  # the session's language stayed its own


# -- the web's plain-text answers ---------------------------------------------------------------
@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(build_app(ServeConfig(db_path=store.path, token=INSTRUCTOR))) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "status", "said"),
    [
        ("GET", "/", 403, "403 proibido: é preciso o token do painel"),
        ("GET", "/nowhere", 403, "403 proibido: é preciso o token do painel"),
        ("GET", f"/nowhere?token={INSTRUCTOR}", 404, "não encontrado"),
        ("GET", f"/class/nope?token={INSTRUCTOR}", 404, "turma inexistente"),
        ("GET", f"/api/class/nope?token={INSTRUCTOR}", 404, "turma inexistente"),
        ("GET", f"/class/one/student/zed?token={INSTRUCTOR}", 404, "turma ou aluno inexistente"),
        ("GET", "/static/vendor/nope.js", 404, "não encontrado"),
        ("POST", f"/?token={INSTRUCTOR}", 405, "405 método não permitido"),
    ],
)
def test_the_webs_plain_answers_follow_the_request(
    client: TestClient, method: str, path: str, status: int, said: str
) -> None:
    portuguese = client.request(method, path, headers={"Accept-Language": "pt-BR,en;q=0.5"})
    assert (portuguese.status_code, portuguese.text) == (status, said + "\n")
    english = client.request(method, path + ("&" if "?" in path else "?") + "lang=en")
    assert english.status_code == status and english.text != portuguese.text


def test_a_terminal_speaks_the_language_its_lab_was_brought_up_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminals, "_argv", lambda *_args: (["cat"], None))
    token = Seats(store.db).issue("one--bob")
    config = ServeConfig(db_path=store.path, token=INSTRUCTOR, max_terminals=1)
    auth = {"Authorization": f"Bearer {token}"}
    with (
        TestClient(build_app(config)) as client,
        client.websocket_connect("/api/terminal/m", headers=auth) as one,
    ):
        one.send_bytes(b"a\r")
        assert b"a" in one.receive_bytes()
        with client.websocket_connect("/api/terminal/m", headers=auth) as two:
            closed = json.loads(two.receive_text())
        with client.websocket_connect("/api/terminal/m?lang=en", headers=auth) as three:
            english = json.loads(three.receive_text())
    assert closed["message"] == "Você já tem 1 terminais abertos."
    assert english["message"] == "You have 1 terminals open already."


# -- what the dashboard's scripts show ----------------------------------------------------------
def test_the_scripts_words_come_from_the_page(client: TestClient) -> None:
    for strings in (i18n.dashboard_strings, i18n.watch_strings):
        english, portuguese = strings("en"), strings("pt-BR")
        assert english.keys() == portuguese.keys()
        assert all(english[k] != portuguese[k] for k in english)
    grid = client.get(f"/class/one?token={INSTRUCTOR}&lang=pt-BR").text
    attribute = re.search(r'data-strings="([^"]*)"', grid)
    assert attribute is not None
    shown = json.loads(html.unescape(attribute.group(1)))
    assert shown == i18n.dashboard_strings("pt-BR") and shown["updated"] == "atualizado às {time}"


def test_no_script_writes_english_of_its_own() -> None:
    """A user-facing word in a script is a string literal with a space between letters; the
    scripts' words come from data-strings instead."""
    sentence = re.compile(r"""(["'`])[^"'`\n]*[A-Za-z]{2,} [A-Za-z]{2,}[^"'`\n]*\1""")
    allowed = {'"use strict"'}
    code = {
        path.name: re.sub(r"(?m)^\s*//.*$", "", path.read_text(encoding="utf-8"))  # comments
        for path in STATIC.glob("*.js")
    }
    found = {name: [m.group(0) for m in sentence.finditer(text)] for name, text in code.items()}
    assert {name: [s for s in shown if s not in allowed] for name, shown in found.items()} == {
        name: [] for name in found
    }
