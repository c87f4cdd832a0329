// #/functions: apps (URL, last sync, a sync button, syncing a new URL) and their functions
// (triggers, flow control, retries), each with an invoke form that sends a test event through
// POST /e/<key> (or, for cron-only functions, runs it through POST /invoke/<id>) and follows
// the runs it starts.

import { ApiError, api, eventKey } from "./api.js";
import { badge, clear, ended, h, poll, problem, toast, when } from "./dom.js";

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
    const names = (fn.triggers || []).map((t) => t.event).filter(Boolean);
    const concrete = names.find((n) => !n.includes("*")) || (names[0] || "").replaceAll("*", "test");
    // No event trigger (cron only): run it directly through POST /invoke/<id> with `data`.
    const direct = !names.length;
    const editor = h("textarea.json-editor", {
      id: "invoke-json",
      spellcheck: false,
      rows: 10,
      "aria-label": "Event JSON",
      value: JSON.stringify(direct ? { data: {} } : { name: concrete, data: {} }, null, 2),
    });
    const status = h("p.json-status", { id: "invoke-json-status" });
    const keyInput = h("input", { type: "text", id: "invoke-key", value: eventKey.get(), "aria-label": "Event key", size: 12 });
    const sendButton = h(
      "button.button.primary",
      { type: "submit", id: "invoke-send" },
      direct ? "Run now" : "Send event",
    );
    const result = h("div.invoke-result", { id: "invoke-result" });

    function validate() {
      try {
        const value = JSON.parse(editor.value);
        const list = Array.isArray(value) ? value : [value];
        const bad = list.find(
          (ev) => !ev || typeof ev !== "object" || (!direct && (typeof ev.name !== "string" || !ev.name)),
        );
        if (direct && Array.isArray(value)) throw new Error('a direct run takes one object: {"data": {...}}');
        if (!list.length || bad) throw new Error('each event needs a "name" (a non-empty string)');
        const badData = list.find((ev) => ev.data !== undefined && (typeof ev.data !== "object" || Array.isArray(ev.data) || ev.data === null));
        if (badData) throw new Error('"data" must be an object');
        status.textContent = list.length > 1 ? `valid JSON, ${list.length} events` : "valid JSON";
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
    editor.addEventListener("input", validate);
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
          const key = keyInput.value.trim() || "dev";
          eventKey.set(key);
          sendButton.disabled = true;
          try {
            if (direct) {
              const answer = await api.invoke(fn.id, value.data || {});
              follow([answer.id], result);
            } else {
              const answer = await api.sendEvents(value, key);
              follow(answer.ids || [], result);
            }
          } catch (error) {
            const hint =
              error instanceof ApiError && error.status === 401 ? " (check the event key: STEPLINE_EVENT_KEYS)" : "";
            clear(result, problem(`${error.message}${hint}`));
          } finally {
            sendButton.disabled = false;
          }
        },
      },
      h("label.field", null, "Event (JSON: one event or an array)", editor),
      status,
      h("div.form-row", null, h("label", null, "Event key ", keyInput), h("span.spacer"), format, sendButton),
      result,
    );
    validate();
    if (direct) {
      status.textContent = "No event trigger (cron only): this runs the function directly with this data.";
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
                ? entry.outcomes.map((o) => h("span.chip.skip-chip", { title: o.reason || "" }, `${o.outcome}: ${o.function_id}`))
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
