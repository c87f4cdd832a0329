// #/functions: apps (URL, last sync, a sync button, syncing a new URL) and their functions
// (triggers, flow control, retries), each with an invoke form that runs that one function through
// POST /invoke/<id> (no other listener of its trigger, no rate limit or debounce on the way),
// its data prefilled from the last event of its trigger, and follows the run it starts; and a
// "Send event" button opening the Send-event dialog (send.js) with the trigger's name.

import { api } from "./api.js";
import { badge, clear, ended, h, poll, problem, toast, when } from "./dom.js";
import { heldUntil } from "./events.js";
import { lastEventOf, openSendDialog } from "./send.js";

const OPTION_LABEL = {
  concurrency: "concurrency",
  rateLimit: "rate limit",
  throttle: "throttle",
  debounce: "debounce",
  batchEvents: "batch",
  priority: "priority",
  idempotency: "idempotency",
  cancel: "cancel on",
  timeouts: "timeouts",
  singleton: "singleton",
};

export function mountFunctions(root) {
  const message = h("div.list-message");
  const appsBox = h("div.apps", { id: "apps" });
  const fnsBox = h("div.functions", { id: "functions" });
  const urlInput = h("input", { type: "url", id: "sync-url", placeholder: "http://localhost:3000/api/inngest", "aria-label": "App URL" });
  const syncForm = h(
    "form.inline-form",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        const button = e.currentTarget.querySelector("button");
        button.disabled = true;
        try {
          const { data } = await api.syncUrl(urlInput.value.trim());
          toast(`Synced ${data.app_id || data.url}`);
          urlInput.value = "";
          load();
        } catch (error) {
          toast(`Sync failed: ${error.message}`, "error");
        } finally {
          button.disabled = false;
        }
      },
    },
    urlInput,
    h("button.button", { type: "submit" }, "Sync new app"),
  );
  root.append(
    h("header.page-head", null, h("h1", null, "Functions & apps"), syncForm),
    message,
    h("h2", null, "Apps"),
    appsBox,
    h("h2", null, "Functions"),
    fnsBox,
  );

  const stops = [];
  let openInvoke = null; // function id whose invoke form is open

  async function load() {
    let apps;
    let fns;
    try {
      [apps, fns] = await Promise.all([api.apps(), api.functions()]);
    } catch (error) {
      clear(message, problem(error));
      return;
    }
    clear(message);
    renderApps(apps.data || []);
    renderFunctions(fns.data || []);
  }

  function renderApps(apps) {
    clear(appsBox);
    if (!apps.length) {
      appsBox.append(h("div.empty", null, "No apps yet: sync one by its URL above, or start Stepline with in-process functions."));
      return;
    }
    for (const app of apps) {
      const syncButton = app.url
        ? h(
            "button.button.small",
            {
              type: "button",
              dataset: { syncApp: app.id },
              onclick: async (e) => {
                const button = e.currentTarget;
                button.disabled = true;
                button.textContent = "Syncing…";
                try {
                  const { data } = await api.syncApp(app.id);
                  toast(data.modified === false ? `${app.id}: already up to date` : `${app.id}: synced`);
                  await load();
                } catch (error) {
                  toast(`Sync of ${app.id} failed: ${error.message}`, "error");
                  button.disabled = false;
                  button.textContent = "Sync";
                }
              },
            },
            "Sync",
          )
        : null;
      appsBox.append(
        h(
          "div.card.app-card",
          { dataset: { appId: app.id } },
          h("div.card-title", null, h("strong", null, app.id), syncButton),
          h(
            "dl.facts",
            null,
            fact("URL", app.url ? h("span.mono", null, app.url) : h("span.muted", null, "in-process")),
            fact("Last sync", app.synced_at ? when(app.synced_at) : "—"),
            fact("Functions", String((app.functions || []).length)),
          ),
        ),
      );
    }
  }

  function renderFunctions(fns) {
    clear(fnsBox);
    if (!fns.length) {
      fnsBox.append(h("div.empty", null, "No functions registered."));
      return;
    }
    for (const fn of fns) fnsBox.append(functionCard(fn));
  }

  function functionCard(fn) {
    const slot = h("div.invoke-slot");
    const invokeButton = h(
      "button.button.primary.small",
      {
        type: "button",
        dataset: { invoke: fn.id },
        onclick: () => {
          openInvoke = openInvoke === fn.id ? null : fn.id;
          for (const other of fnsBox.querySelectorAll(".invoke-slot")) clear(other);
          if (openInvoke) slot.append(invokeForm(fn));
        },
      },
      "Invoke",
    );
    const card = h(
      "div.card.function-card",
      { dataset: { functionId: fn.id } },
      h(
        "div.card-title",
        null,
        h("strong", null, fn.name || fn.id),
        h("span.mono.muted", null, fn.id),
        h("span.spacer"),
        h("a.button.ghost.small", { href: `#/runs?function_id=${encodeURIComponent(fn.id)}` }, "Runs"),
        concreteName(fn)
          ? h(
              "button.button.ghost.small",
              { type: "button", dataset: { sendEvent: fn.id }, onclick: () => openSendDialog(concreteName(fn)) },
              "Send event",
            )
          : null,
        invokeButton,
      ),
      h(
        "dl.facts",
        null,
        fact("Triggers", triggers(fn.triggers || [])),
        fact("Flow control", options(fn.options || {})),
        fact("Retries", String(fn.retries ?? "—")),
        fact("App", h("span", null, fn.app_id, fn.app_url ? h("span.mono.muted", null, ` ${fn.app_url}`) : null)),
        fact("Driver", fn.driver === "http" ? h("span.mono", null, fn.url || "http") : "in-process"),
        fact("Last sync", fn.last_synced_at ? when(fn.last_synced_at) : "—"),
      ),
      slot,
    );
    if (openInvoke === fn.id) slot.append(invokeForm(fn));
    return card;
  }

  // --- invoke -------------------------------------------------------------------------------

  function invokeForm(fn) {
    const trigger = concreteName(fn);
    const editor = h("textarea.json-editor", {
      id: "invoke-json",
      spellcheck: false,
      rows: 10,
      "aria-label": "Invoke data JSON",
      value: JSON.stringify({ data: {} }, null, 2),
    });
    const status = h("p.json-status", { id: "invoke-json-status" });
    const note = h("p.muted", { id: "invoke-template" });
    const sendButton = h("button.button.primary", { type: "submit", id: "invoke-send" }, "Invoke");
    const result = h("div.invoke-result", { id: "invoke-result" });
    let edited = false;

    function validate() {
      try {
        const value = JSON.parse(editor.value);
        if (!value || typeof value !== "object" || Array.isArray(value)) {
          throw new Error('invoke takes one object: {"data": {...}}');
        }
        for (const field of ["data", "user"]) {
          const v = value[field];
          if (v !== undefined && (typeof v !== "object" || Array.isArray(v) || v === null)) {
            throw new Error(`"${field}" must be an object`);
          }
        }
        status.textContent = "valid JSON";
        status.className = "json-status ok";
        editor.classList.remove("invalid");
        sendButton.disabled = false;
        return value;
      } catch (error) {
        status.textContent = error.message;
        status.className = "json-status bad";
        editor.classList.add("invalid");
        sendButton.disabled = true;
        return undefined;
      }
    }
    editor.addEventListener("input", () => {
      edited = true;
      validate();
    });
    editor.addEventListener("keydown", (e) => {
      if (e.key === "Tab" && !e.shiftKey) {
        e.preventDefault();
        editor.setRangeText("  ", editor.selectionStart, editor.selectionEnd, "end");
      } else if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) {
        e.preventDefault();
        form.requestSubmit();
      }
    });

    const format = h(
      "button.button.ghost.small",
      {
        type: "button",
        id: "invoke-format",
        onclick: () => {
          const value = validate();
          if (value !== undefined) editor.value = JSON.stringify(value, null, 2);
        },
      },
      "Format",
    );

    const form = h(
      "form.invoke-form",
      {
        onsubmit: async (e) => {
          e.preventDefault();
          const value = validate();
          if (value === undefined) return;
          sendButton.disabled = true;
          try {
            const answer = await api.invoke(fn.id, value.data || {}, value.user);
            follow([answer.id], result);
          } catch (error) {
            clear(result, problem(error.message));
          } finally {
            sendButton.disabled = false;
          }
        },
      },
      h("label.field", null, "Data for this run (JSON)", editor),
      status,
      note,
      h("div.form-row", null, h("span.spacer"), format, sendButton),
      result,
    );
    validate();
    note.textContent = `Runs ${fn.id} alone (POST /invoke/${fn.id}): other functions listening to its trigger, rate limits, debounce and batching are not involved.`;
    if (trigger) {
      lastEventOf(trigger)
        .then((last) => {
          if (!last || edited || !form.isConnected) return;
          const value = { data: last.data || {} };
          if (last.user && Object.keys(last.user).length) value.user = last.user;
          editor.value = JSON.stringify(value, null, 2);
          validate();
          note.textContent += ` Data from the last ${trigger} event.`;
        })
        .catch(() => {});
    }
    queueMicrotask(() => editor.focus());
    return form;
  }

  // After a send: each event id, then the runs it starts, live until they end (or 60 s).
  function follow(ids, box) {
    const started = Date.now();
    const lines = new Map(ids.map((id) => [id, { runs: [], outcomes: [] }]));
    const draw = () =>
      clear(
        box,
        [...lines].map(([id, entry]) =>
          h(
            "div.sent",
            { dataset: { eventId: id } },
            h("span", null, "Sent "),
            h("a.mono", { href: `#/events/${encodeURIComponent(id)}` }, id),
            h("span.muted", null, " → "),
            entry.runs.length
              ? entry.runs.map((run) =>
                  h(
                    "a.chip.run-chip",
                    { href: `#/runs/${encodeURIComponent(run.run_id)}`, dataset: { runId: run.run_id } },
                    badge(run.status),
                    h("span", null, run.function_id),
                  ),
                )
              : entry.outcomes.length
                ? entry.outcomes.map((o) =>
                    h("span.chip.skip-chip", { title: o.reason || "", dataset: { outcome: o.outcome } }, `${o.outcome}: ${o.function_id}`, heldUntil(o)),
                  )
                : h("span.muted", null, Date.now() - started > 5000 ? "no run started" : "waiting for runs…"),
          ),
        ),
      );
    draw();
    const stop = poll(async () => {
      for (const id of lines.keys()) {
        try {
          const answer = await api.eventRuns(id);
          lines.set(id, { runs: answer.data || [], outcomes: (answer.metadata && answer.metadata.outcomes) || [] });
        } catch {
          /* keep the last answer */
        }
      }
      draw();
      const settled = [...lines.values()].every((e) => e.runs.length && e.runs.every((r) => ended(r.status)));
      if (settled || Date.now() - started > 60_000 || !box.isConnected) stop();
      return 1000;
    }, 1000);
    stops.push(stop);
  }

  load();
  const timer = setInterval(() => {
    if (!document.hidden && !openInvoke) load();
  }, 10_000);
  return () => {
    clearInterval(timer);
    for (const stop of stops) stop();
  };
}

// An event name that can be sent to trigger `fn` (a wildcard trigger gets "test" for "*").
function concreteName(fn) {
  const names = (fn.triggers || []).map((t) => t.event).filter(Boolean);
  return names.find((n) => !n.includes("*")) || (names[0] || "").replaceAll("*", "test");
}

function fact(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

function triggers(list) {
  if (!list.length) return h("span.muted", null, "none");
  return list.map((t) =>
    h(
      "span.chip.trigger",
      { title: t.expression ? `if ${t.expression}` : "" },
      t.cron ? `cron ${t.cron}` : t.event,
      t.expression ? h("span.muted", null, ` if ${t.expression}`) : null,
    ),
  );
}

function options(opts) {
  const keys = Object.keys(opts).filter((k) => opts[k] !== null && opts[k] !== undefined);
  if (!keys.length) return h("span.muted", null, "none");
  return keys.flatMap((key) => {
    const values = Array.isArray(opts[key]) ? opts[key] : [opts[key]];
    return values.map((value) =>
      h("span.chip.option", { dataset: { option: key } }, h("strong", null, OPTION_LABEL[key] || key), ` ${describe(value)}`),
    );
  });
}

function describe(value) {
  if (value === null || typeof value !== "object") return String(value);
  return Object.entries(value)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
}
