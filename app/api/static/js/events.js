// #/events: received events, newest first, live; each row shows the runs the event started or
// why a function did not run (`metadata.outcomes` of GET /v1/events/<id>/runs) and opens to the
// payload. #/events/<id>: one event, the same card opened. `#/events?name=&filter=` searches
// by exact name and a CEL filter over `event` (a partial search says so, as on Runs).

import { api } from "./api.js";
import {
  badge,
  clear,
  ended,
  h,
  hashQuery,
  jsonView,
  ms,
  poll,
  problem,
  setHashQuery,
  shortId,
  when,
} from "./dom.js";
import { openSendDialog } from "./send.js";

const PAGE_SIZE = 30;
const POLL_MS = 2000;
const RUNS_FRESH_MS = 30_000; // how long after receipt an event may still start runs (debounce...)
const OUTCOME_TEXT = {
  rate_limited: "rate limited",
  debounced: "debounced",
  batched: "batched",
  idempotent: "idempotency: duplicate",
  singleton_skipped: "singleton: skipped",
  no_match: "expression false",
  key_error: "key failed",
};

// Runs and outcomes per event, refreshed while they may still change.
class RunsCache {
  constructor() {
    this.entries = new Map(); // internal id -> {runs, outcomes, at, error}
  }

  stale(event, now) {
    const entry = this.entries.get(event.internal_id);
    if (!entry) return true;
    if (now - entry.at < POLL_MS) return false;
    const young = now - ms(event.received_at) < RUNS_FRESH_MS;
    return young || entry.runs.some((run) => !ended(run.status));
  }

  async refresh(events) {
    const now = Date.now();
    const todo = events.filter((event) => this.stale(event, now)).slice(0, 12);
    await Promise.all(
      todo.map(async (event) => {
        try {
          const answer = await api.eventRuns(event.internal_id);
          this.entries.set(event.internal_id, {
            runs: answer.data || [],
            outcomes: (answer.metadata && answer.metadata.outcomes) || [],
            at: now,
          });
        } catch (error) {
          this.entries.set(event.internal_id, { runs: [], outcomes: [], at: now, error });
        }
      }),
    );
    return todo.length > 0;
  }

  get(id) {
    return this.entries.get(id);
  }
}

function runChip(run) {
  return h(
    "a.chip.run-chip",
    { href: `#/runs/${encodeURIComponent(run.run_id)}`, title: run.run_id, dataset: { runId: run.run_id } },
    badge(run.status),
    h("span", null, run.function_id),
  );
}

// A held event's next moment: "debounced until T", "in a batch that closes at T (n of max)".
const UNTIL_TEXT = { debounced: "until", batched: "closes at", rate_limited: "next at" };
export function heldUntil(outcome) {
  if (!outcome.until || !UNTIL_TEXT[outcome.outcome]) return null;
  const at = new Date(outcome.until);
  const late = at.getTime() < Date.now();
  const batch = outcome.batch;
  const fill = batch && batch.size != null && batch.max_size != null ? ` (${batch.size} of ${batch.max_size})` : "";
  return h("span.until.muted", { title: outcome.until }, ` ${UNTIL_TEXT[outcome.outcome]} ${at.toLocaleTimeString()}${fill}${late ? " (passed)" : ""}`);
}

// What happened to the event: its runs, then every function that did not run and why.
function outcomesView(entry, event) {
  if (!entry) return h("span.muted", null, "…");
  if (entry.error) return h("span.muted", { title: entry.error.message }, "runs unavailable");
  const started = new Set(entry.runs.map((run) => run.run_id));
  const skips = entry.outcomes.filter((o) => o.outcome !== "started" || (o.run_id && !started.has(o.run_id)));
  const chips = [
    ...entry.runs.map(runChip),
    ...skips
      .filter((o) => o.outcome !== "started")
      .map((o) =>
        h(
          o.run_id ? "a.chip.skip-chip" : "span.chip.skip-chip",
          {
            title: o.reason || o.outcome,
            href: o.run_id ? `#/runs/${encodeURIComponent(o.run_id)}` : null,
            dataset: { outcome: o.outcome },
          },
          h("span.skip-reason", null, OUTCOME_TEXT[o.outcome] || o.outcome.replaceAll("_", " ")),
          h("span", null, o.function_id),
          heldUntil(o),
        ),
      ),
  ];
  if (chips.length) return chips;
  if (event.name.startsWith("inngest/")) return h("span.muted.no-runs", null, "internal event");
  const young = Date.now() - ms(event.received_at) < 3000;
  return h("span.muted.no-runs", null, young ? "matching…" : "no function matched");
}

function eventCard(event, cache, { open = false } = {}) {
  const payload = { name: event.name, data: event.data, user: event.user, id: event.id, ts: event.ts };
  if (event.v) payload.v = event.v;
  const entry = cache.get(event.internal_id);
  const details = h(
    "details.event-row",
    {
      open,
      class: event.name.startsWith("inngest/") ? "internal" : null,
      dataset: { eventId: event.internal_id, eventName: event.name },
    },
    h(
      "summary",
      null,
      h("span.event-name", null, event.name),
      h("span.mono.muted", { title: event.internal_id }, shortId(event.internal_id)),
      h("span.event-time", null, when(event.received_at)),
      h("span.outcomes", null, outcomesView(entry, event)),
    ),
    h(
      "div.event-body",
      null,
      h(
        "div.event-links",
        null,
        h("a", { href: `#/events/${encodeURIComponent(event.internal_id)}` }, "Permalink"),
        event.id ? h("span.muted", null, `sender id: ${event.id}`) : null,
      ),
      jsonView(payload, { label: "Event payload" }),
      entry && entry.outcomes.some((o) => o.reason)
        ? h(
            "ul.reasons",
            null,
            entry.outcomes
              .filter((o) => o.reason)
              .map((o) => h("li", null, h("strong", null, o.function_id), `: ${o.reason}`)),
          )
        : null,
    ),
  );
  return details;
}

export function mountEvents(root) {
  const cache = new RunsCache();
  const list = h("div.event-list", { id: "event-list" });
  const message = h("div.list-message");
  const newer = h("button.button.ghost", { type: "button" }, "← Newer");
  const older = h("button.button.ghost", { type: "button" }, "Older →");
  const live = h("span.live", { title: "Refreshes every 2 seconds" }, "live");
  const q = hashQuery();
  const search = { name: q.get("name") || "", filter: q.get("filter") || "" };
  const nameInput = h("input", { type: "search", id: "event-name", "aria-label": "Event name", placeholder: "Name (exact)" });
  const filterInput = h("input.search", {
    type: "search",
    id: "event-filter",
    "aria-label": "Search events (CEL filter)",
    placeholder: "Search: event.data.order_id == \"o-1\"",
    spellcheck: "false",
  });
  nameInput.value = search.name;
  filterInput.value = search.filter;
  const partial = h("div.partial-note", { id: "event-partial", role: "status", hidden: true });
  root.append(
    h(
      "header.page-head",
      null,
      h("h1", null, "Events"),
      h("div.filters", null, live),
      h("button.button.primary", { type: "button", id: "send-event", onclick: () => openSendDialog() }, "Send event"),
    ),
    h(
      "form.search-row",
      {
        onsubmit: (e) => {
          e.preventDefault();
          search.name = nameInput.value.trim();
          search.filter = filterInput.value.trim();
          setHashQuery("/events", search);
          cursors = [null];
          page = 0;
          generation += 1;
          stop.now();
        },
      },
      nameInput,
      filterInput,
      h("button.button.ghost", { type: "submit", id: "event-search-go" }, "Search"),
    ),
    partial,
    message,
    list,
    h("footer.pager", null, newer, older),
  );
  let cursors = [null];
  let page = 0;
  let nextCursor = null;
  const open = new Set();
  list.addEventListener(
    "toggle",
    (e) => {
      const id = e.target.dataset && e.target.dataset.eventId;
      if (!id) return;
      if (e.target.open) open.add(id);
      else open.delete(id);
    },
    true,
  );

  let generation = 0; // bumped by every page change: older answers are dropped
  newer.addEventListener("click", () => {
    if (page > 0) page -= 1;
    generation += 1;
    stop.now();
  });
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors = cursors.slice(0, page + 1);
    cursors.push(nextCursor);
    page += 1;
    generation += 1;
    stop.now();
  });

  let events = [];
  let key = "";
  const stop = poll(async () => {
    const asked = generation;
    try {
      const answer = await api.events({ limit: PAGE_SIZE, cursor: cursors[page], name: search.name, filter: search.filter });
      if (asked !== generation) return 0;
      events = answer.data || [];
      const meta = answer.metadata || {};
      nextCursor = meta.next_cursor || null;
      partial.hidden = !meta.partial;
      if (meta.partial) {
        clear(partial, h("strong", null, "Partial search: "), `looked at events received down to ${new Date(meta.searched_to).toLocaleString()}. Use Older → to search further.`);
      }
      clear(message);
    } catch (error) {
      if (asked !== generation) return 0;
      partial.hidden = true;
      if (error.status === 400) {
        events = [];
        list.replaceChildren();
        key = "";
        clear(message, h("div.problem", { id: "event-search-error", role: "alert" }, error.message));
        return POLL_MS;
      }
      clear(message, problem(error.status === 404 ? "This Stepline has no GET /v1/events." : error));
      return error.status === 401 ? 10_000 : POLL_MS;
    }
    await cache.refresh(events);
    const next = JSON.stringify([events.map((e) => e.internal_id), events.map((e) => cache.get(e.internal_id)), page]);
    if (next !== key || events.some((e) => Date.now() - ms(e.received_at) < 60_000)) {
      key = next;
      list.replaceChildren(...events.map((event) => eventCard(event, cache, { open: open.has(event.internal_id) })));
      if (!events.length) list.append(h("div.empty", null, search.name || search.filter ? "No events match." : "No events yet."));
    } else {
      for (const time of list.querySelectorAll("time")) time.textContent = when(time.dateTime).textContent;
    }
    newer.disabled = page === 0;
    older.disabled = !nextCursor;
    live.hidden = page !== 0;
    return POLL_MS;
  }, POLL_MS);
  return stop;
}

export function mountEvent(root, eventId) {
  const cache = new RunsCache();
  const box = h("div.event-list.single");
  root.append(h("a.back", { href: "#/events" }, "← Events"), h("h1", null, "Event"), box);
  let event = null;
  return poll(async () => {
    try {
      event = event || (await api.event(eventId)).data;
    } catch (error) {
      clear(box, problem(error.status === 404 ? `Event ${eventId} not found.` : error));
      return 5000;
    }
    await cache.refresh([event]);
    clear(box, eventCard(event, cache, { open: true }));
    return POLL_MS;
  }, POLL_MS);
}
