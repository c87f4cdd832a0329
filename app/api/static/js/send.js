// The Send-event dialog: send one event (or an array) through POST /e/<key>, starting every
// function that listens, through their flow control. Typing an event name fills the editor
// with the last event of that name (its data and user) as a template. Also `lastEventOf`,
// which the invoke form uses for its template.

import { ApiError, api, eventKey } from "./api.js";
import { clear, h, problem, toast } from "./dom.js";

const SCAN_PAGES = 3; // newest 300 events: enough for a dev server's "the last one like this"

// The newest received event named `name`, or null. Asks the API to filter by name (ignored by
// a server without that filter) and checks each event's name itself.
export async function lastEventOf(name) {
  if (!name) return null;
  let cursor = null;
  for (let page = 0; page < SCAN_PAGES; page += 1) {
    const answer = await api.events({ name, limit: 100, cursor });
    const found = (answer.data || []).find((event) => event.name === name);
    if (found) return found;
    cursor = answer.metadata && answer.metadata.next_cursor;
    if (!cursor) return null;
  }
  return null;
}

function template(name, event) {
  const out = { name, data: (event && event.data) || {} };
  if (event && event.user && Object.keys(event.user).length) out.user = event.user;
  return out;
}

export function openSendDialog(initialName = "") {
  const nameInput = h("input", {
    type: "text",
    id: "send-name",
    value: initialName,
    placeholder: "shop/order.placed",
    "aria-label": "Event name",
    autocomplete: "off",
  });
  const editor = h("textarea.json-editor", {
    id: "send-json",
    spellcheck: false,
    rows: 12,
    "aria-label": "Event JSON",
    value: JSON.stringify(template(initialName, null), null, 2),
  });
  const hint = h("p.muted", { id: "send-template" });
  const status = h("p.json-status", { id: "send-json-status" });
  const keyInput = h("input", { type: "text", id: "send-key", value: eventKey.get(), "aria-label": "Event key", size: 12 });
  const sendButton = h("button.button.primary", { type: "submit", id: "send-submit" }, "Send event");
  const result = h("div", { id: "send-result" });
  let edited = false;
  let asked = 0;

  async function fill() {
    const name = nameInput.value.trim();
    const ask = ++asked;
    if (!name) return;
    let last = null;
    try {
      last = await lastEventOf(name);
    } catch (error) {
      hint.textContent = `Could not look up earlier events: ${error.message}`;
      return;
    }
    if (ask !== asked) return; // the name changed meanwhile
    if (!edited) {
      editor.value = JSON.stringify(template(name, last), null, 2);
      validate();
    }
    clear(
      hint,
      last
        ? [`Template: the last ${name} event, received ${new Date(last.received_at).toLocaleString()} (`, h("a.mono", { href: `#/events/${encodeURIComponent(last.internal_id)}` }, last.internal_id), ")."]
        : `No earlier ${name} event: starting from an empty one.`,
    );
  }

  function validate() {
    try {
      const value = JSON.parse(editor.value);
      const list = Array.isArray(value) ? value : [value];
      if (!list.length || list.some((ev) => !ev || typeof ev !== "object" || typeof ev.name !== "string" || !ev.name)) {
        throw new Error('each event needs a "name" (a non-empty string)');
      }
      if (list.some((ev) => ev.data !== undefined && (typeof ev.data !== "object" || Array.isArray(ev.data) || ev.data === null))) {
        throw new Error('"data" must be an object');
      }
      status.textContent = list.length > 1 ? `valid JSON, ${list.length} events` : "valid JSON";
      status.className = "json-status ok";
      sendButton.disabled = false;
      return value;
    } catch (error) {
      status.textContent = error.message;
      status.className = "json-status bad";
      sendButton.disabled = true;
      return undefined;
    }
  }

  let timer = null;
  nameInput.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(fill, 250);
  });
  editor.addEventListener("input", () => {
    edited = true;
    validate();
  });

  const dialog = h(
    "dialog.dialog.send-dialog",
    { id: "send-dialog" },
    h(
      "form",
      {
        method: "dialog",
        onsubmit: async (e) => {
          e.preventDefault();
          const value = validate();
          if (value === undefined) return;
          const key = keyInput.value.trim() || "dev";
          eventKey.set(key);
          sendButton.disabled = true;
          try {
            const answer = await api.sendEvents(value, key);
            const ids = answer.ids || [];
            toast(`Sent ${ids.length} event${ids.length === 1 ? "" : "s"}`);
            clear(
              result,
              ids.map((id) => h("p", null, "Sent ", h("a.mono.sent-event", { href: `#/events/${encodeURIComponent(id)}` }, id))),
            );
          } catch (error) {
            const extra = error instanceof ApiError && error.status === 401 ? " (check the event key: STEPLINE_EVENT_KEYS)" : "";
            clear(result, problem(`${error.message}${extra}`));
          } finally {
            sendButton.disabled = false;
          }
        },
      },
      h("h2", null, "Send event"),
      h("label.field", null, "Event name", nameInput),
      hint,
      h("label.field", null, "Event (JSON: one event or an array)", editor),
      status,
      result,
      h(
        "div.dialog-actions",
        null,
        h("label", null, "Event key ", keyInput),
        h("button.button.ghost", { type: "button", id: "send-close", onclick: () => dialog.close() }, "Close"),
        sendButton,
      ),
    ),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  validate();
  if (initialName) fill();
  nameInput.focus();
  return dialog;
}
