// #/runs/<id>: one run: its trigger events, a timeline of its steps (bars on one time axis;
// each row opens to the step's output or error), its output, and what can be done with it
// (cancel while it runs; rerun or replay once it ended). Polls GET /v1/runs/<id> until it ends.

import { api } from "./api.js";
import {
  absolute,
  ago,
  badge,
  clear,
  clock,
  copyButton,
  duration,
  ended,
  errorView,
  h,
  jsonView,
  ms,
  poll,
  problem,
  shortId,
  stamp,
  toast,
  when,
} from "./dom.js";
import { runDuration } from "./runs.js";

const POLL_MS = 1000;
const KIND_ICON = {
  StepRun: "▶",
  Sleep: "☾",
  WaitForEvent: "⌛",
  InvokeFunction: "↪",
  SendEvent: "✉",
};
const KIND_LABEL = {
  StepRun: "step",
  Sleep: "sleep",
  WaitForEvent: "wait for event",
  InvokeFunction: "invoke",
  SendEvent: "send event",
};
const WAITING_LABEL = {
  concurrency: "Concurrency limit:",
  throttled: "Throttled:",
  retrying: "Retrying:",
  sleeping: "Sleeping:",
  waiting_for_event: "Waiting:",
  scheduled: "Scheduled:",
  queued: "Queued:",
  no_worker: "No worker:",
};
const PENDING = new Set(["Sleeping", "Waiting", "Retrying", "Planned", "Running"]);

export function mountRun(root, runId) {
  const head = h("header.run-head");
  const body = h("div.run-body");
  const message = h("div.list-message");
  root.append(h("a.back", { href: "#/runs" }, "← Runs"), head, message, body);

  let run = null;
  let lastKey = "";
  const open = new Set(); // step ids whose rows are open (kept across refreshes)
  const events = new Map(); // internal id -> event (or Error)
  const openEvents = new Set(); // trigger cards opened or closed by hand (kept across refreshes)
  const closedEvents = new Set();

  async function loadEvents(ids) {
    const missing = ids.slice(0, 10).filter((id) => !events.has(id));
    if (!missing.length) return false;
    await Promise.all(
      missing.map(async (id) => {
        try {
          events.set(id, (await api.event(id)).data);
        } catch (error) {
          events.set(id, error);
        }
      }),
    );
    return true;
  }

  const stop = poll(async () => {
    let answer;
    try {
      answer = await api.run(runId);
    } catch (error) {
      if (error.status === 404) {
        clear(head);
        clear(body);
        clear(message, problem(`Run ${runId} not found (it may have expired).`));
        lastKey = "";
        return 5000;
      }
      clear(message, problem(error));
      return 3000;
    }
    clear(message);
    run = answer.data;
    const newEvents = await loadEvents(run.event_ids || (run.event_id ? [run.event_id] : []));
    const key = JSON.stringify(run);
    // The header (with its buttons) is rebuilt only when the run changed, so a click never
    // lands on a button that is being replaced; the timeline moves with the clock while the
    // run is going.
    if (key !== lastKey) renderHead();
    else tickHead();
    if (key !== lastKey || newEvents || !ended(run.status)) renderBody();
    lastKey = key;
    return ended(run.status) ? 5000 : POLL_MS;
  }, POLL_MS);

  // --- actions ------------------------------------------------------------------------------

  async function act(button, work) {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      toast(error.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  // Cancelling takes two clicks (within 4 s), so a stray one does no harm.
  let confirmUntil = 0;
  function cancelButton() {
    const button = h("button.button.danger", { type: "button", id: "cancel-run" }, "Cancel run");
    const show = () => {
      const confirming = Date.now() < confirmUntil;
      button.textContent = confirming ? "Click again to cancel" : "Cancel run";
      button.classList.toggle("confirming", confirming);
    };
    show();
    button.addEventListener("click", () => {
      if (Date.now() >= confirmUntil) {
        confirmUntil = Date.now() + 4000;
        show();
        setTimeout(show, 4050);
        return;
      }
      confirmUntil = 0;
      show();
      act(button, async () => {
        await api.cancel(runId);
        toast("Run cancelled");
        stop.now();
      });
    });
    return button;
  }

  function rerunButton() {
    return h(
      "button.button",
      {
        type: "button",
        id: "rerun-run",
        title: "Start a new run from the start, with the same event",
        onclick: (e) =>
          act(e.currentTarget, async () => {
            const { data } = await api.rerun(runId);
            toast("Rerun started");
            location.hash = `#/runs/${encodeURIComponent(data.run_id)}`;
          }),
      },
      "Rerun",
    );
  }

  function replayButton(step, label = "Replay from failed step") {
    return h(
      "button.button",
      {
        type: "button",
        class: step ? "small" : "",
        id: step ? null : "replay-run",
        title: step
          ? `New run that reuses the steps before "${step.name}" and runs it again`
          : "New run that reuses every step before the failed one and runs from there",
        onclick: (e) =>
          act(e.currentTarget, async () => {
            e.stopPropagation();
            const { data } = await api.replay(runId, step ? step.id : null);
            toast(`Replay started (${data.copied_steps ?? 0} steps reused)`);
            location.hash = `#/runs/${encodeURIComponent(data.run_id)}`;
          }),
      },
      label,
    );
  }

  // --- rendering ------------------------------------------------------------------------------

  function renderHead() {
    const steps = run.steps || [];
    const failedStep = steps.find((s) => s.status === "Failed");
    clear(
      head,
      h(
        "div.run-title",
        null,
        h("h1", null, run.function_id),
        badge(run.status),
        h("span.mono.muted", { title: run.run_id }, run.run_id),
        copyButton(run.run_id, "Copy run id"),
        h("span.spacer"),
        h(
          "div.actions",
          null,
          ended(run.status) ? null : cancelButton(),
          ended(run.status) ? rerunButton() : null,
          ended(run.status) && (failedStep || run.status === "Failed") ? replayButton(null) : null,
        ),
      ),
      h(
        "dl.meta",
        null,
        meta("Created", stamp(run.created_at)),
        meta("Started", run.run_started_at ? stamp(run.run_started_at) : "not yet"),
        meta("Ended", run.ended_at ? stamp(run.ended_at) : "—"),
        meta("Duration", h("span.run-duration", null, runDuration(run) || "—")),
        meta("Steps", String(steps.length)),
        run.original_run_id
          ? meta(
              "Rerun of",
              h("a.mono", { href: `#/runs/${encodeURIComponent(run.original_run_id)}` }, shortId(run.original_run_id)),
            )
          : null,
      ),
    );
  }

  function tickHead() {
    const span = head.querySelector(".run-duration");
    if (span) span.textContent = runDuration(run) || "—";
  }

  function renderBody() {
    clear(body, waitingNote(), timelineSection(run.steps || []), resultSection(), logsSection(), triggerSection());
  }

  // What `ctx.logger` logged (in-process functions), oldest first; each line names its step.
  function logsSection() {
    const lines = run.logs || [];
    if (!lines.length) return null;
    return h(
      "section.section",
      { id: "logs" },
      h("h2", null, `Logs (${lines.length})`),
      logLines(lines, true),
      run.logs_dropped ? h("p.muted", null, `${run.logs_dropped} more lines were not kept (at most 1,000 per run).`) : null,
    );
  }

  // Why a queued or waiting run is not running (GET /v1/runs/<id> `waiting`, app/why.py).
  function waitingNote() {
    const waiting = !ended(run.status) && run.waiting;
    if (!waiting) return null;
    const alarm = waiting.reason === "no_worker";
    return h(
      "div.waiting-note",
      { id: "waiting", class: alarm ? "alarm" : "", dataset: { reason: waiting.reason }, role: "status" },
      h("strong", null, WAITING_LABEL[waiting.reason] || "Waiting"),
      " ",
      h("span.waiting-message", null, waiting.message),
      waiting.until ? h("span.muted", null, ` (${ago(waiting.until)})`) : null,
      alarm ? h("a", { href: "#/workers" }, " · Workers") : null,
    );
  }

  function meta(label, value) {
    return h("div", null, h("dt", null, label), h("dd", null, value));
  }

  function triggerSection() {
    const ids = run.event_ids || (run.event_id ? [run.event_id] : []);
    const cards = ids.slice(0, 10).map((id) => {
      const event = events.get(id);
      if (!event) return h("div.card.event-card", null, h("span.muted", null, "loading…"));
      if (event instanceof Error) {
        return h("div.card.event-card", null, h("span.mono", null, id), problem(event));
      }
      const payload = { name: event.name, data: event.data, user: event.user, id: event.id, ts: event.ts };
      if (event.v) payload.v = event.v;
      const card = h(
        "details.card.event-card",
        { open: ids.length === 1 ? !closedEvents.has(id) : openEvents.has(id) },
        h(
          "summary",
          null,
          h("span.event-name", null, event.name),
          h("a.mono.muted", { href: `#/events/${encodeURIComponent(id)}`, title: id }, shortId(id)),
          h("span.muted", null, when(event.received_at)),
        ),
        jsonView(payload, { label: "Event payload" }),
      );
      card.addEventListener("toggle", () => {
        (card.open ? openEvents : closedEvents).add(id);
        (card.open ? closedEvents : openEvents).delete(id);
      });
      return card;
    });
    const more = ids.length > 10 ? h("p.muted", null, `…and ${ids.length - 10} more events`) : null;
    return h(
      "section.section",
      { id: "trigger" },
      h("h2", null, ids.length > 1 ? `Triggering events (${ids.length})` : "Triggering event"),
      cards.length ? cards : h("p.muted", null, "No event (cron or invoked)."),
      more,
    );
  }

  function timelineSection(steps) {
    const now = Date.now();
    const t0 = ms(run.created_at);
    let t1 = run.ended_at ? ms(run.ended_at) : now;
    for (const step of steps) {
      const end = ms(step.ended_at);
      if (Number.isFinite(end) && end > t1) t1 = end;
    }
    const span = Math.max(t1 - t0, 1);
    const pos = (t) => Math.min(100, Math.max(0, ((t - t0) / span) * 100));

    const axis = h(
      "div.axis",
      { "aria-hidden": "true" },
      [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, f ? `+${duration(f * span)}` : "0")),
    );

    const started = ms(run.run_started_at);
    const runEnd = run.ended_at ? ms(run.ended_at) : now;
    const runRow = h(
      "div.step-row.run-row-bar",
      null,
      h("span.step-icon", null, "ƒ"),
      h("span.step-name", null, "Run"),
      badge(run.status),
      h("span.attempts"),
      h(
        "span.track",
        null,
        Number.isFinite(started) && started > t0
          ? h("span.bar.queued", { style: bar(pos(t0), pos(started)), title: `queued ${duration(started - t0)}` })
          : null,
        Number.isFinite(started)
          ? h("span.bar", {
              class: `status-${(run.status || "").toLowerCase()}`,
              style: bar(pos(started), pos(runEnd)),
              title: `ran ${duration(runEnd - started)}`,
            })
          : h("span.bar.queued", { style: bar(0, pos(now)) }),
      ),
      h("span.step-duration", null, runDuration(run)),
    );

    const rows = steps.map((step) => stepRow(step, { t0, pos, now }));
    return h(
      "section.section",
      { id: "timeline" },
      h("h2", null, "Timeline"),
      h(
        "div.timeline",
        null,
        h("div.step-row.axis-row", null, h("span"), h("span"), h("span"), h("span"), axis, h("span")),
        runRow,
        rows.length ? rows : h("p.muted.timeline-empty", null, ended(run.status) ? "No steps." : "Waiting for the first step…"),
      ),
    );
  }

  function stepRow(step, { pos, now }) {
    const start = ms(step.started_at);
    const end = ms(step.ended_at);
    const due = ms(step.due_at || step.retry_at);
    const pending = PENDING.has(step.status) && !ended(run.status);
    const status = (step.status || "").toLowerCase();
    let barEl = null;
    if (Number.isFinite(start)) {
      const stop = Number.isFinite(end) ? end : pending ? now : start;
      barEl = h("span.bar", {
        class: `status-${status} kind-${(step.kind || "").toLowerCase()}${pending ? " pending" : ""}`,
        style: bar(pos(start), pos(stop)),
      });
    } else if (Number.isFinite(end)) {
      barEl = h("span.tick", { class: `status-${status}`, style: { left: `${pos(end)}%` } });
    }
    const took = Number.isFinite(start) ? (Number.isFinite(end) ? end - start : pending ? now - start : NaN) : NaN;
    const id = step.id || step.name;
    const summary = h(
      "summary.step-row",
      null,
      h("span.step-icon", { title: KIND_LABEL[step.kind] || step.kind || "" }, KIND_ICON[step.kind] || "•"),
      h("span.step-name", { title: step.name || "" }, step.name || step.id || "(unnamed)"),
      badge(step.status),
      h("span.attempts", { title: "attempts" }, step.attempts > 1 ? `×${step.attempts}` : ""),
      h("span.track", null, barEl),
      h("span.step-duration", null, Number.isFinite(took) ? duration(took) : ""),
    );
    const details = h(
      "details.step",
      {
        dataset: { stepId: step.id || "", stepName: step.name || "", status: step.status || "" },
        open: open.has(id) || (step.status === "Failed" && !open.has(`closed:${id}`)),
      },
      summary,
      stepBody(step, due),
    );
    details.addEventListener("toggle", () => {
      if (details.open) {
        open.add(id);
        open.delete(`closed:${id}`);
      } else {
        open.delete(id);
        open.add(`closed:${id}`);
      }
    });
    return details;
  }

  function stepBody(step, due) {
    const facts = [
      ["Kind", KIND_LABEL[step.kind] || step.kind || "—"],
      ["Started", step.started_at ? absolute(step.started_at) : "—"],
      ["Ended", step.ended_at ? absolute(step.ended_at) : "—"],
      ["Attempts", step.attempts ? String(step.attempts) : "—"],
      ["Step id", step.id ? h("span.mono", null, step.id) : "—"],
    ];
    let note = null;
    if (Number.isFinite(due) && !ended(run.status) && PENDING.has(step.status)) {
      const iso = new Date(due).toISOString();
      const verb = {
        Sleeping: "Sleeping until",
        Waiting: step.waiting_for ? `Waiting for ${step.waiting_for} until` : "Waiting until",
        Retrying: "Next attempt at",
      }[step.status] || "Due at";
      note = h("p.due", null, `${verb} ${clock(iso)} (${ago(iso)})`);
    } else if (Number.isFinite(due) && step.kind !== "StepRun") {
      facts.push([step.kind === "Sleep" ? "Wakes at" : "Timeout at", absolute(new Date(due).toISOString())]);
    }
    if (step.waiting_for) facts.push(["Event", step.waiting_for]);
    const out = [];
    if (step.error !== undefined && step.error !== null) {
      out.push(h("h3", null, step.status === "Retrying" ? "Last error" : "Error"), errorView(step.error));
    }
    if (step.output !== undefined && (step.error === undefined || step.error === null)) {
      out.push(h("h3", null, "Output"), jsonView(step.output, { label: `Output of ${step.name}` }));
    }
    const stepLogs = (run.logs || []).filter((line) => line.step_id && line.step_id === step.id);
    if (stepLogs.length) out.push(h("h3", null, "Logs"), logLines(stepLogs, false));
    const canReplay = ended(run.status) && step.id && step.kind === "StepRun" && ["Completed", "Failed"].includes(step.status);
    return h(
      "div.step-body",
      null,
      note,
      h("dl.facts", null, facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v)))),
      out,
      canReplay ? h("div.step-actions", null, replayButton(step, "Replay from this step")) : null,
    );
  }

  function resultSection() {
    if (run.status === "Completed") {
      return h("section.section", { id: "result" }, h("h2", null, "Output"), jsonView(run.output, { label: "Run output" }));
    }
    if (run.status === "Failed") {
      return h("section.section", { id: "result" }, h("h2", null, "Error"), errorView(run.error ?? { message: "failed" }));
    }
    if (run.status === "Cancelled") {
      return h("section.section", { id: "result" }, h("h2", null, "Cancelled"), h("p.muted", null, `Cancelled ${ago(run.ended_at)}.`));
    }
    return h(
      "section.section",
      { id: "result" },
      h("h2", null, "Output"),
      h("p.muted", null, run.waiting ? `${run.status}: ${run.waiting.message}` : run.status === "Queued" ? "Queued…" : "Running…"),
    );
  }

  return stop;
}

function logLines(lines, withStep) {
  return h(
    "ol.log-lines",
    null,
    lines.map((line) =>
      h(
        "li.log-line",
        { class: `level-${line.level}`, dataset: { step: line.step || "" } },
        h("span.log-time.mono", { title: new Date(line.ts).toISOString() }, new Date(line.ts).toISOString().slice(11, 23)),
        h("span.log-level", null, line.level),
        withStep ? h("span.log-step.muted", null, line.step || "—") : null,
        h("span.log-message.mono", null, line.message),
      ),
    ),
  );
}

function bar(from, to) {
  return { left: `${from}%`, width: `max(${Math.max(to - from, 0)}%, 3px)` };
}
