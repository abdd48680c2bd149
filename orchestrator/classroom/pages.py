"""The dashboard's pages: the class grid, one student's checks, the list of classes.

Pure functions of the gradebook and the check history, so each page is tested without a
server. Every string that comes from a roster or a check is escaped, and the grid's
script rebuilds rows with `textContent` only: data never becomes markup.
"""

from __future__ import annotations

import html
import urllib.parse
from typing import Any

from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.copies import describe, is_copy
from orchestrator.report import Attempt

REFRESH_SECONDS = 3
MAX_HISTORY = 50

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


def with_text(book: dict[str, Any]) -> dict[str, Any]:
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
    book: dict[str, Any], r: dict[str, Any], history: list[Attempt], token: str, nonce: str
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
        f"<tr><td>{E(gb.iso(a.at))}</td><td>{a.report.score}/{a.report.max_score}</td>"
        f"<td>{E(', '.join(t.id for t in a.report.tasks if t.passed) or '-')}</td></tr>"
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
