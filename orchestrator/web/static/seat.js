// The student's seat: Check, Hint, Reset through the API, and a terminal per machine.
// Everything from the server is put in the page with textContent; the terminal's
// output goes only to xterm.js (its DOM renderer makes text nodes, never markup).
"use strict";
const body = document.body;
const strings = JSON.parse(body.dataset.strings);
const nonce = body.dataset.nonce;

// xterm.js adds <style> elements for its layout; the page's CSP admits only elements
// carrying this response's nonce, so every <style> made from here on gets it.
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (tag, options) {
  const made = createElement.call(this, tag, options);
  if (String(tag).toLowerCase() === "style") made.nonce = nonce;
  return made;
};

function notice(text) { document.getElementById("notice").textContent = text; }

async function call(path, payload) {
  const res = await fetch(path, {
    method: "POST", cache: "no-store", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(payload || {}),
  });
  let data = {};
  try { data = await res.json(); } catch (e) { data = {error: "HTTP " + res.status}; }
  if (res.status === 429) throw new Error(strings.too_fast);
  if (!res.ok) throw new Error(data.error + (data.hint ? " (" + data.hint + ")" : ""));
  return data;
}

function showReport(report) {
  let score = 0;
  for (const t of report.tasks) {
    const state = t.passed ? "pass" : "fail";
    score += t.points;
    for (const s of document.querySelectorAll(`.status[data-task="${CSS.escape(t.id)}"]`)) {
      s.className = "status " + state; s.dataset.state = state;
      s.textContent = strings["status_" + state];
    }
    const list = document.querySelector(`.messages[data-task="${CSS.escape(t.id)}"]`);
    if (list) {
      // each failed check: what it expects (its name), and apart, what it found
      const items = t.checks.filter(c => !c.passed).map(c => {
        const li = document.createElement("li");
        const expected = document.createElement("span");
        expected.className = "expected"; expected.textContent = c.name; li.append(expected);
        if (c.message) {
          const found = document.createElement("span"), label = document.createElement("span");
          found.className = "found"; label.className = "label"; label.textContent = strings.found;
          found.append(label, " " + c.message); li.append(found);
        }
        return li;
      });
      if (t.first && t.first.length) {
        const li = document.createElement("li"); li.className = "first";
        li.textContent = strings.do_first.replace("{tasks}", t.first.join(", "));
        items.unshift(li);
      }
      list.replaceChildren(...items);
    }
  }
  document.getElementById("score").textContent = String(score);
}

document.getElementById("check").addEventListener("click", async (ev) => {
  ev.target.disabled = true; notice(strings.checking);
  try { showReport(await call("/api/check")); notice(""); }
  catch (e) { notice(strings.failed + " " + e.message); }
  finally { ev.target.disabled = false; }
});

for (const button of document.querySelectorAll("button.hint")) {
  button.addEventListener("click", async () => {
    const task = button.dataset.task;
    const box = document.querySelector(`.hint-text[data-task="${CSS.escape(task)}"]`);
    try {
      const h = await call("/api/hint", {task});
      box.textContent = h.text === null ? strings.no_hints
        : strings.hint_n.replace("{n}", h.n).replace("{total}", h.total) + ": " + h.text;
    } catch (e) { box.textContent = strings.failed + " " + e.message; }
  });
}

document.getElementById("reset").addEventListener("click", async (ev) => {
  if (!window.confirm(strings.reset_confirm)) return;
  ev.target.disabled = true; notice(strings.resetting);
  try { await call("/api/reset"); notice(strings.reset_done); }
  catch (e) { notice(strings.failed + " " + e.message); }
  finally { ev.target.disabled = false; }
});

// -- terminals: one per machine, opened when its tab is first shown ---------------------
const opened = new Map();

function openTerminal(machine, pane) {
  if (typeof Terminal === "undefined") return;
  pane.replaceChildren();
  const term = new Terminal({cursorBlink: true, scrollback: 2000});
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(pane);
  fit.fit();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // the page's language: what the server says about the terminal is said in it too
  const url = `${proto}//${location.host}/api/terminal/${encodeURIComponent(machine)}` +
    `?cols=${term.cols}&rows=${term.rows}` +
    `&lang=${encodeURIComponent(document.documentElement.lang)}`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) { term.write(new Uint8Array(ev.data)); return; }
    const msg = JSON.parse(ev.data);
    if (msg.type === "closed") term.write("\r\n\x1b[2m" + msg.message + "\x1b[0m\r\n");
  };
  ws.onclose = () => {
    term.write("\r\n\x1b[2m" + strings.terminal_closed + "\x1b[0m\r\n");
    const again = document.createElement("button");
    again.type = "button"; again.className = "reconnect"; again.textContent = strings.reconnect;
    again.addEventListener("click", () => { term.dispose(); openTerminal(machine, pane); });
    pane.prepend(again);
  };
  term.onData((d) => { if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d)); });
  term.onResize(({cols, rows}) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "resize", cols, rows}));
  });
  window.addEventListener("resize", () => fit.fit());
  opened.set(machine, {term, ws});
  term.focus();
}

function showTab(machine) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.machine === machine));
  }
  for (const pane of document.querySelectorAll(".pane")) {
    pane.hidden = pane.dataset.machine !== machine;
    if (!pane.hidden && !opened.has(machine)) openTerminal(machine, pane);
    else if (!pane.hidden) opened.get(machine).term.focus();
  }
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => showTab(tab.dataset.machine));
}
const first = document.querySelector(".tab");
if (first) showTab(first.dataset.machine);
