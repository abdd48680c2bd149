"""`guestlab serve`: the instructor's live dashboard, on the standard library's HTTP server.

It only reads: every request opens the state database read-only, so the CLI keeps writing
meanwhile (WAL lets readers and one writer work side by side) and a dashboard bug cannot
damage the store. Every request needs the token printed at start, as `?token=`,
`Authorization: Bearer ...` or `X-Guestlab-Token`. Every string that comes from a roster
or a check is escaped: the page builds its grid with `textContent`, never `innerHTML`.
"""

from __future__ import annotations

import hmac
import html
import json
import re
import secrets
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.copies import describe, is_copy
from orchestrator.classroom.store import list_classes, student_history

REFRESH_SECONDS = 3
MAX_HISTORY = 50


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(expected: str, query: dict[str, list[str]], headers: Any) -> bool:
    """Whether a request carries the token, compared in constant time."""
    given = [*query.get("token", []), headers.get("X-Guestlab-Token", "")]
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    return any(g and hmac.compare_digest(g.encode(), expected.encode()) for g in given)


def read_only(db_path: Path) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(db_path))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


# -- pages -------------------------------------------------------------------------------------
E = html.escape

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
.meta { color: #666; margin-bottom: 1rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }
th { background: #f3f3f3; }
td.cell { text-align: center; min-width: 4.5rem; }
.pass { background: #2e7d32; color: #fff; }
.fail { background: #c62828; color: #fff; }
.unchecked { background: #e0e0e0; color: #555; }
.hints { display: block; font-size: .75rem; opacity: .9; }
.copy { color: #b26a00; font-weight: bold; }
.error { color: #c62828; }
.stale { color: #c62828; }
.legend span { display: inline-block; padding: 0 .5rem; margin-right: .3rem; }
pre { white-space: pre-wrap; margin: 0; }
"""

# The grid is rebuilt from JSON with DOM calls only: data never becomes markup.
SCRIPT = """
const body = document.body;
const token = body.dataset.token, api = body.dataset.api, base = body.dataset.base;
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function hintText(n) { return n + (n === 1 ? " hint" : " hints"); }
function cell(student, taskId, c) {
  const td = el("td", {"class": "cell " + c.state, "data-student": student,
                       "data-task": taskId, "data-state": c.state});
  td.append(c.state === "unchecked" ? "·" : c.points + "/" + c.max_points);
  if (c.hints > 0) td.append(el("span", {"class": "hints"}, hintText(c.hints)));
  if (c.messages.length) td.title = c.messages.join("\\n");
  return td;
}
function render(book) {
  const rows = document.getElementById("rows");
  const fresh = [];
  for (const r of book.students) {
    const tr = el("tr", {"data-student": r.student});
    const a = el("a", {"href": base + "/student/" + encodeURIComponent(r.student) +
                         "?token=" + encodeURIComponent(token)}, r.student);
    const who = el("td"); who.append(a); tr.append(who, el("td", {}, r.name));
    for (const t of book.tasks) tr.append(cell(r.student, t.id, r.tasks[t.id]));
    tr.append(el("td", {"class": "total"}, r.total + "/" + r.max_total));
    tr.append(el("td", {}, String(r.attempts)));
    const last = r.last_check ? new Date(r.last_check * 1000).toLocaleTimeString() : "-";
    tr.append(el("td", {}, last));
    const notes = el("td");
    if (r.error) notes.append(el("div", {"class": "error"}, r.error));
    for (const f of r.copies) {
      notes.append(el("div", {"class": "copy"}, (f.problem ? "" : "copy? ") + f.text));
    }
    tr.append(notes);
    fresh.push(tr);
  }
  rows.replaceChildren(...fresh);
  document.getElementById("updated").textContent =
    "updated " + new Date().toLocaleTimeString();
  document.getElementById("updated").className = "";
}
async function refresh() {
  try {
    const res = await fetch(api, {headers: {"X-Guestlab-Token": token}, cache: "no-store"});
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
  } catch (e) {
    const u = document.getElementById("updated");
    u.textContent = "cannot refresh: " + e.message; u.className = "stale";
  }
}
setInterval(refresh, Number(body.dataset.refresh) * 1000);
"""


def _page(title: str, nonce: str, body: str, attrs: dict[str, str] | None = None) -> str:
    data = "".join(f' data-{k}="{E(v)}"' for k, v in (attrs or {}).items())
    script = f'<script nonce="{nonce}">{SCRIPT}</script>' if attrs else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{E(title)}</title><style nonce="{nonce}">{STYLE}</style></head>'
        f"<body{data}>{body}{script}</body></html>"
    )


def _link(path: str, token: str) -> str:
    return E(f"{path}?token={urllib.parse.quote(token)}")


def _cell(student: str, task: str, c: dict[str, Any]) -> str:
    text = "·" if c["state"] == gb.UNCHECKED else f"{c['points']}/{c['max_points']}"
    n = c["hints"]
    hints = f'<span class="hints">{n} hint{"s" if n != 1 else ""}</span>' if n else ""
    title = f' title="{E(chr(10).join(c["messages"]))}"' if c["messages"] else ""
    return (
        f'<td class="cell {c["state"]}" data-student="{E(student)}" data-task="{E(task)}"'
        f' data-state="{c["state"]}"{title}>{E(text)}{hints}</td>'
    )


def _note(flag: dict[str, Any]) -> str:
    return ("copy? " if is_copy(flag) else "") + describe(flag)


def _with_text(book: dict[str, Any]) -> dict[str, Any]:
    """The JSON the grid reads: copy flags come with their sentence ready to show."""
    for r in book["students"]:
        r["copies"] = [{**f, "text": describe(f)} for f in r["copies"]]
    return book


def class_page(book: dict[str, Any], token: str, nonce: str) -> str:
    cid = book["class"]
    base = f"/class/{urllib.parse.quote(cid)}"
    head = "".join(
        f'<th title="{E(t["title"])}">{E(t["id"])} <small>({t["points"]})</small></th>'
        for t in book["tasks"]
    )
    rows = []
    for r in book["students"]:
        cells = "".join(_cell(r["student"], t["id"], r["tasks"][t["id"]]) for t in book["tasks"])
        notes = f'<div class="error">{E(r["error"])}</div>' if r["error"] else ""
        notes += "".join(f'<div class="copy">{E(_note(f))}</div>' for f in r["copies"])
        rows.append(
            f'<tr data-student="{E(r["student"])}">'
            f'<td><a href="{_link(base + "/student/" + urllib.parse.quote(r["student"]), token)}">'
            f"{E(r['student'])}</a></td><td>{E(r['name'])}</td>{cells}"
            f'<td class="total">{r["total"]}/{r["max_total"]}</td><td>{r["attempts"]}</td>'
            f"<td>{E(gb.iso(r['last_check'])[11:19] or '-')}</td><td>{notes}</td></tr>"
        )
    status = book.get("status", "")
    body = (
        f"<h1>{E(cid)}</h1>"
        f'<div class="meta">{len(book["students"])} student(s) · class {E(status)} · '
        f'<span id="updated">loaded</span> · <a href="{_link("/", token)}">all classes</a></div>'
        '<p class="legend"><span class="cell pass">pass</span><span class="cell fail">fail</span>'
        '<span class="cell unchecked">not checked yet</span> · points/max, and hints used</p>'
        f"<table><thead><tr><th>student</th><th>name</th>{head}<th>total</th>"
        f"<th>attempts</th><th>last check</th><th>notes</th></tr></thead>"
        f'<tbody id="rows">{"".join(rows)}</tbody></table>'
    )
    attrs = {
        "token": token,
        "api": f"/api/class/{urllib.parse.quote(cid)}",
        "base": base,
        "refresh": str(REFRESH_SECONDS),
    }
    return _page(f"{cid} · guestlab", nonce, body, attrs)


def student_page(
    book: dict[str, Any], r: dict[str, Any], history: list[dict[str, Any]], token: str, nonce: str
) -> str:
    cid = book["class"]
    titles = {t["id"]: t["title"] for t in book["tasks"]}
    tasks = []
    for tid, c in r["tasks"].items():
        msgs = "".join(f"<li>{E(m)}</li>" for m in c["messages"])
        tasks.append(
            f"<tr>{_cell(r['student'], tid, c)}<td><b>{E(tid)}</b> {E(titles.get(tid, ''))}</td>"
            f"<td>{c['hints']}</td><td><ul>{msgs}</ul></td></tr>"
        )
    past = "".join(
        f"<tr><td>{E(gb.iso(a['at']))}</td><td>{a['score']}/{a['max_score']}</td>"
        f"<td>{E(', '.join(t['id'] for t in a['tasks'] if t['passed']) or '-')}</td></tr>"
        for a in reversed(history[-MAX_HISTORY:])
    )
    notes = f'<p class="error">{E(r["error"])}</p>' if r["error"] else ""
    notes += "".join(f'<p class="copy">{E(_note(f))}</p>' for f in r["copies"])
    body = (
        f"<h1>{E(r['name'])} <small>({E(r['student'])})</small></h1>"
        f'<div class="meta">{E(r["email"])} · class <a href="'
        f'{_link("/class/" + urllib.parse.quote(cid), token)}">{E(cid)}</a> · lab {E(r["status"])}'
        f" · score {r['total']}/{r['max_total']} · {r['attempts']} attempt(s) of their own</div>"
        f"{notes}<h2>Latest check</h2><table><thead><tr><th>result</th><th>task</th>"
        f"<th>hints</th><th>what is still wrong</th></tr></thead><tbody>{''.join(tasks)}</tbody>"
        f"</table><h2>Checks</h2><table><thead><tr><th>when</th><th>score</th>"
        f"<th>tasks passed</th></tr></thead><tbody>{past}</tbody></table>"
    )
    return _page(f"{r['student']} · {cid}", nonce, body)


def index_page(classes: list[Any], token: str, nonce: str) -> str:
    items = "".join(
        f'<li><a href="{_link("/class/" + urllib.parse.quote(c.id), token)}">{E(c.id)}</a>'
        f" ({E(c.status)}, on {E(c.backend)})</li>"
        for c in classes
    )
    body = f"<h1>Classes</h1><ul>{items or '<li>No class yet.</li>'}</ul>"
    return _page("guestlab classes", nonce, body)


# -- the server --------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "guestlab"
    sys_version = ""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, HTTPStatus):
            code = code.value
        method = self.command or "-"
        path = (getattr(self, "path", "") or "-").split("?", 1)[0] if self.command else "-"
        self.server.log(f"{self.address_string()} {method} {path} {code} {size}")

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(format % args)

    def _send(self, status: int, body: str, ctype: str, nonce: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        # the token travels in links: never in a Referer header to anywhere else
        self.send_header("Referrer-Policy", "no-referrer")
        src = f"'nonce-{nonce}'" if nonce else "'none'"
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; script-src {src}; style-src {src}; connect-src 'self';"
            " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text + "\n", "text/plain")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not token_ok(self.server.token, query, self.headers):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: the dashboard's token is needed")
            return
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        try:
            db = read_only(self.server.db_path)
        except sqlite3.Error as e:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"the state store cannot be read: {e}")
            return
        try:
            self._route(db, parts)
        except sqlite3.Error as e:  # a store being written right now: the next poll succeeds
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"the state store cannot be read: {e}")
        finally:
            db.close()

    def _route(self, db: sqlite3.Connection, parts: list[str]) -> None:
        token, nonce = self.server.token, secrets.token_urlsafe(12)
        if not parts:
            self._send(200, index_page(list_classes(db), token, nonce), "text/html", nonce)
        elif parts == ["api", "classes"]:
            body = [{"id": c.id, "status": c.status} for c in list_classes(db)]
            self._send(200, json.dumps(body), "application/json")
        elif len(parts) == 3 and parts[:2] == ["api", "class"]:
            book = gb.live(db, parts[2])
            if book is None:
                self._text(HTTPStatus.NOT_FOUND, "no such class")
            else:
                self._send(200, json.dumps(_with_text(book)), "application/json")
        elif len(parts) == 2 and parts[0] == "class":
            book = gb.live(db, parts[1])
            if book is None:
                self._text(HTTPStatus.NOT_FOUND, "no such class")
            else:
                self._send(200, class_page(book, token, nonce), "text/html", nonce)
        elif len(parts) == 4 and parts[0] == "class" and parts[2] == "student":
            book = gb.live(db, parts[1])
            rows = [r for r in (book or {}).get("students", []) if r["student"] == parts[3]]
            if book is None or not rows:
                self._text(HTTPStatus.NOT_FOUND, "no such class or student")
            else:
                history = student_history(db, rows[0]["lab"])
                self._send(
                    200, student_page(book, rows[0], history, token, nonce), "text/html", nonce
                )
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        self._text(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard only reads")


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        db_path: Path,
        token: str,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.db_path = db_path
        self.token = token
        self._log = log
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def log(self, line: str) -> None:
        """Hand one access-log line on, without the token and with controls made visible."""
        self._log(log_safe(line, self.token))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"


def log_safe(line: str, token: str) -> str:
    """A log line that prints no token and no control character (request paths are
    whatever a client sent: a terminal escape in one must not reach the instructor's)."""
    line = _QUERY.sub(r"\1?…", line)  # query strings carry the token: none is logged
    for form in {token, urllib.parse.quote(token, safe=""), html.escape(token)}:
        if form:
            line = line.replace(form, "[token]")
    return "".join(
        c
        if c.isprintable() and not 0x80 <= ord(c) <= 0x9F
        else f"\\x{ord(c):02x}"
        if ord(c) < 0x100
        else f"\\u{ord(c):04x}"
        for c in line
    )


_QUERY = re.compile(r"(/[^\s?'\"]*)\?[^\s'\"]*")


def class_ids(db_path: Path) -> list[str]:
    db = read_only(db_path)
    try:
        return [c.id for c in list_classes(db)]
    finally:
        db.close()
