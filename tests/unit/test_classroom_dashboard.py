"""The instructor's dashboard on a fake store (Starlette's TestClient): token, escaping,
JSON, read-only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.classroom.store import ClassStore
from orchestrator.report import Report
from orchestrator.state import Store
from orchestrator.web.app import build_app
from orchestrator.web.config import ServeConfig, instructor_ok, new_token

EVIL = '<script>alert("x")</script>'
TASKS = [{"id": "find-id", "title": "Find <it>", "points": 1}]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    cs = ClassStore(store.db)
    cs.put_class(
        "lab1", scenario_path="x.yaml", backend="docker", memory=None, expires=None, tasks=TASKS
    )
    cs.put_member("lab1", "ann", EVIL, "ann@example.org", "lab1--ann", 0)
    cs.put_member("lab1", "bob", "Bob & Co", "", "lab1--bob", 1)
    yield store
    store.close()


@pytest.fixture
def server(db: Store) -> Iterator[TestClient]:
    with TestClient(build_app(ServeConfig(db_path=db.path, token="s3cret-token"))) as client:
        yield client


def get(srv: TestClient, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    res = srv.get(path, headers=headers or {})
    return res.status_code, res.text, res.headers


def attempt(store: Store, lab: str, passed: bool, message: str = "") -> None:
    store.add_attempt(
        lab,
        Report.from_dict(
            {
                "score": int(passed),
                "max_score": 1,
                "checked_at": time.time(),
                "tasks": [
                    {
                        "id": "find-id",
                        "passed": passed,
                        "points": int(passed),
                        "max_points": 1,
                        "checks": [{"name": "c", "passed": passed, "message": message}],
                    }
                ],
            }
        ),
    )


def test_the_token_is_needed_everywhere(server: TestClient) -> None:
    for path in ("/", "/class/lab1", "/api/class/lab1", "/class/lab1/student/ann", "/nope"):
        assert get(server, path)[0] == 403, path
        assert get(server, path + "?token=wrong")[0] == 403, path
        assert get(server, path, {"Authorization": "Bearer wrong"})[0] == 403, path
    assert get(server, "/?token=s3cret-token")[0] == 200
    assert get(server, "/", {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert get(server, "/", {"X-Guestlab-Token": "s3cret-token"})[0] == 200


def test_token_check_function() -> None:
    from starlette.requests import Request

    def request(query: str, headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "query_string": query.encode(), "headers": raw})

    assert instructor_ok(request("token=abc", {}), "abc")
    assert instructor_ok(request("", {"Authorization": "bearer abc"}), "abc")
    assert not instructor_ok(request("token=", {"X-Guestlab-Token": ""}), "abc")
    assert not instructor_ok(request("token=abcd", {}), "abc")
    assert len(new_token()) >= 32 and new_token() != new_token()


def test_student_strings_are_escaped(server: TestClient, db: Store) -> None:
    attempt(db, "lab1--ann", False, EVIL)
    for path in ("/class/lab1", "/class/lab1/student/ann"):
        status, body, headers = get(server, path + "?token=s3cret-token")
        assert status == 200
        assert EVIL not in body
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body  # Jinja2 autoescape
        assert "script-src 'nonce-" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
    assert "Bob &amp; Co" in get(server, "/class/lab1?token=s3cret-token")[1]
    assert "Find &lt;it&gt;" in get(server, "/class/lab1?token=s3cret-token")[1]


def test_the_grid_json_follows_every_check(server: TestClient, db: Store) -> None:
    def states() -> dict[str, str]:
        status, body, headers = get(server, "/api/class/lab1", {"X-Guestlab-Token": "s3cret-token"})
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        return {r["student"]: r["tasks"]["find-id"]["state"] for r in json.loads(body)["students"]}

    assert states() == {"ann": "unchecked", "bob": "unchecked"}
    attempt(db, "lab1--ann", False, "no")
    db.add_hint("lab1--bob", "find-id", 0)
    attempt(db, "lab1--bob", True)  # a student's own `guestlab check` moves the grid too
    assert states() == {"ann": "fail", "bob": "pass"}
    body = json.loads(get(server, "/api/class/lab1?token=s3cret-token")[1])
    assert body["students"][1]["tasks"]["find-id"]["hints"] == 1
    assert body["students"][1]["attempts"] == 1


def test_unknown_pages_and_writes(server: TestClient) -> None:
    assert get(server, "/class/nope?token=s3cret-token")[0] == 404
    assert get(server, "/class/lab1/student/zed?token=s3cret-token")[0] == 404
    assert server.post("/?token=s3cret-token", content=b"x").status_code == 405


def test_the_server_never_writes_and_never_blocks_the_cli(server: TestClient, db: Store) -> None:
    # a writer holding a transaction open does not stop reads (WAL), nor do reads stop it
    db.db.execute("BEGIN IMMEDIATE")
    attempt(db, "lab1--ann", True)
    assert get(server, "/api/class/lab1?token=s3cret-token")[0] == 200
    db.db.execute("COMMIT")
    states = json.loads(get(server, "/api/class/lab1?token=s3cret-token")[1])
    assert states["students"][0]["tasks"]["find-id"]["state"] == "pass"
    with pytest.raises(Exception, match="readonly"):
        from orchestrator.web.access import read_only

        read_only(db.path).execute("DELETE FROM classes")
