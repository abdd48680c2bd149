// The class grid, rebuilt from JSON with DOM calls only: data never becomes markup.
// Its own words come from the page (data-strings), in the page's language.
const body = document.body;
const token = body.dataset.token, api = body.dataset.api, base = body.dataset.base;
const strings = JSON.parse(body.dataset.strings);
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function withToken(path) { return path + "?token=" + encodeURIComponent(token); }
function hintText(n) { return (n === 1 ? strings.hint_one : strings.hint_many).replace("{n}", n); }
function cell(student, taskId, c) {
  const td = el("td", {"class": "cell " + c.state, "data-student": student,
                       "data-task": taskId, "data-state": c.state});
  td.append(c.state === "unchecked" ? "·" : c.points + "/" + c.max_points);
  if (c.hints > 0) td.append(el("span", {"class": "hints"}, hintText(c.hints)));
  if (c.messages.length) td.title = c.messages.join("\n");
  return td;
}
function online(r) {
  const studentPath = base + "/student/" + encodeURIComponent(r.student);
  const td = el("td", {"class": "online", "data-student": r.student,
                       "data-online": String(r.connected.length)});
  if (!r.connected.length) { td.textContent = "-"; return td; }
  const names = r.connected.map(s => s.machine + (s.door === "ssh" ? " (ssh)" : ""));
  td.append(el("a", {"href": withToken(studentPath + "/watch")}, "● " + names.join(", ")));
  return td;
}
function render(book) {
  const rows = document.getElementById("rows");
  const fresh = [];
  for (const r of book.students) {
    const tr = el("tr", {"data-student": r.student});
    const a = el("a", {"href": withToken(base + "/student/" + encodeURIComponent(r.student))},
                 r.student);
    const who = el("td"); who.append(a); tr.append(who, el("td", {}, r.name));
    for (const t of book.tasks) tr.append(cell(r.student, t.id, r.tasks[t.id]));
    tr.append(el("td", {"class": "total"}, r.total + "/" + r.max_total));
    tr.append(el("td", {}, String(r.attempts)));
    const last = r.last_check ? new Date(r.last_check * 1000).toLocaleTimeString() : "-";
    tr.append(el("td", {}, last));
    tr.append(online(r));
    const notes = el("td");
    if (r.error) notes.append(el("div", {"class": "error"}, r.error));
    for (const f of r.copies) {
      notes.append(el("div", {"class": "copy"}, (f.problem ? "" : strings.copy + " ") + f.text));
    }
    tr.append(notes);
    fresh.push(tr);
  }
  rows.replaceChildren(...fresh);
  document.getElementById("updated").textContent =
    strings.updated.replace("{time}", new Date().toLocaleTimeString());
  document.getElementById("updated").className = "";
}
async function refresh() {
  try {
    const res = await fetch(api, {headers: {"X-Guestlab-Token": token}, cache: "no-store"});
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
  } catch (e) {
    const u = document.getElementById("updated");
    u.textContent = strings.stale.replace("{error}", e.message); u.className = "stale";
  }
}
setInterval(refresh, Number(body.dataset.refresh) * 1000);
