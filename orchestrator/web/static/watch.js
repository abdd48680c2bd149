// The instructor's read-only view of one student's terminals: output only, no input.
// Its own words come from the page (data-strings), in the page's language.
"use strict";
const body = document.body;
const strings = JSON.parse(body.dataset.strings);
const nonce = document.querySelector("script[nonce]").nonce;
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (tag, options) {
  const made = createElement.call(this, tag, options);
  if (String(tag).toLowerCase() === "style") made.nonce = nonce;
  return made;
};
const status = document.getElementById("status");
const panes = new Map();
if (typeof Terminal === "undefined") {
  document.getElementById("vendor-missing").hidden = false;
} else {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}${body.dataset.socket}` +
    `?token=${encodeURIComponent(body.dataset.token)}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { status.textContent = strings.watching; };
  ws.onclose = () => { status.textContent = strings.disconnected; };
  ws.onmessage = (ev) => {
    if (ev.data instanceof ArrayBuffer) {
      const id = new DataView(ev.data).getUint32(0);
      const pane = panes.get(id);
      if (pane) pane.term.write(new Uint8Array(ev.data, 4));
      return;
    }
    const msg = JSON.parse(ev.data);
    if (msg.type === "open" && !panes.has(msg.id)) {
      const title = document.createElement("div");
      title.className = "pane-title"; title.textContent = msg.machine;
      const box = document.createElement("div");
      box.className = "watch-pane"; box.dataset.session = String(msg.id);
      document.getElementById("panes").append(title, box);
      const term = new Terminal({disableStdin: true, cursorBlink: false});
      term.open(box);
      panes.set(msg.id, {term, title});
    } else if (msg.type === "close" && panes.has(msg.id)) {
      panes.get(msg.id).title.textContent += " " + strings.closed;
    }
  };
}
