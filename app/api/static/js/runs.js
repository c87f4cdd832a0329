// #/runs: every run, newest first, live. Filters go to GET /v1/runs as query parameters and
// pages follow `metadata.next_cursor`, so only one page (PAGE_SIZE runs) is ever loaded.
// The search box is a CEL filter (`filter`): a search looks at a bounded number of runs per
// request, and when it stops short the page says so (`metadata.partial`) and offers to go on.

import { api } from "./api.js";
import {
  badge,
  clear,
  duration,
  h,
  hashQuery,
  ms,
  poll,
  problem,
  setHashQuery,
  shortId,
  when,
} from "./dom.js";

const PAGE_SIZE = 50;
const POLL_MS = 1500;
const STATUSES = ["Queued", "Running", "Completed", "Failed", "Cancelled"];
const RANGES = [
  ["", "Any time"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Custom range…"],
];
const RANGE_MS = { "15m": 900_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 };

export function runDuration(run, now = Date.now()) {
  const start = ms(run.run_started_at);
  if (!Number.isFinite(start)) return "";
  const end = run.ended_at ? ms(run.ended_at) : now;
  return duration(end - start);
}

export function mountRuns(root) {
  const q = hashQuery();
  const filters = {
    function_id: q.get("function_id") || "",
    status: q.get("status") || "",
    range: q.get("range") || "",
    from: q.get("from") || "",
    to: q.get("to") || "",
    filter: q.get("filter") || "",
  };
  // `#/runs?limit=N` picks the page size (1..100).
  const pageSize = Math.min(100, Math.max(1, Number(q.get("limit")) || PAGE_SIZE));
  let cursors = [null]; // cursors[i] fetches page i; the last one shown is cursors[page]
  let page = 0;
  let nextCursor = null;
  let seen = null; // run ids already shown (null before the first answer: nothing flashes)
  let generation = 0; // bumped by every filter or page change: older answers are dropped

  const fnSelect = h("select", { id: "filter-function", "aria-label": "Function" }, h("option", { value: "" }, "All functions"));
  const statusSelect = h(
    "select",
    { id: "filter-status", "aria-label": "Status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s }, s)),
  );
  const rangeSelect = h(
    "select",
    { id: "filter-range", "aria-label": "Time" },
    RANGES.map(([value, label]) => h("option", { value }, label)),
  );
  const fromInput = h("input", { type: "datetime-local", id: "filter-from", "aria-label": "From", step: "1" });
  const toInput = h("input", { type: "datetime-local", id: "filter-to", "aria-label": "To", step: "1" });
  const custom = h("span.custom-range", null, fromInput, "→", toInput);
  const live = h("span.live", { title: "Refreshes every 1.5 seconds" }, "live");
  const search = h("input.search", {
    type: "search",
    id: "filter-search",
    "aria-label": "Search (CEL filter)",
    placeholder: 'Search: event.data.customer == "acme" && error.message.contains("timeout")',
    spellcheck: "false",
  });
  search.value = filters.filter;
  const partial = h("div.partial-note", { id: "search-partial", role: "status", hidden: true });

  statusSelect.value = filters.status;
  rangeSelect.value = filters.range;
  fromInput.value = filters.from;
  toInput.value = filters.to;

  const tbody = h("tbody");
  const message = h("div.list-message");
  const newer = h("button.button.ghost", { type: "button", id: "page-newer" }, "← Newer");
  const older = h("button.button.ghost", { type: "button", id: "page-older" }, "Older →");
  const pageLabel = h("span.muted");

  root.append(
    h(
      "header.page-head",
      null,
      h("h1", null, "Runs"),
      h("div.filters", null, fnSelect, statusSelect, rangeSelect, custom, live),
    ),
    h(
      "form.search-row",
      { onsubmit: (event) => (event.preventDefault(), filtersChanged()) },
      search,
      h("button.button.ghost", { type: "submit", id: "search-go" }, "Search"),
    ),
    partial,
    message,
    h(
      "div.table-wrap",
      null,
      h(
        "table.runs-table",
        { id: "runs-table" },
        h(
          "thead",
          null,
          h("tr", null, ["Status", "Run", "Function", "Created", "Duration"].map((t) => h("th", null, t))),
        ),
        tbody,
      ),
    ),
    h("footer.pager", null, newer, pageLabel, older),
  );

  // Fill the function filter (a failure just leaves "All functions").
  api
    .functions()
    .then(({ data }) => {
      const ids = (data || []).map((fn) => fn.id).sort();
      if (filters.function_id && !ids.includes(filters.function_id)) ids.unshift(filters.function_id);
      fnSelect.append(...ids.map((id) => h("option", { value: id }, id)));
      fnSelect.value = filters.function_id;
    })
    .catch(() => {
      if (filters.function_id) {
        fnSelect.append(h("option", { value: filters.function_id }, filters.function_id));
        fnSelect.value = filters.function_id;
      }
    });

  function params() {
    const out = { function_id: filters.function_id, status: filters.status, limit: pageSize };
    if (filters.filter) out.filter = filters.filter;
    if (RANGE_MS[filters.range]) {
      // Rounded to the minute so that the same URL (and its ETag) serves a minute of polls.
      out.after = Math.floor((Date.now() - RANGE_MS[filters.range]) / 60_000) * 60_000;
    } else if (filters.range === "custom") {
      const from = Date.parse(filters.from);
      const to = Date.parse(filters.to);
      if (Number.isFinite(from)) out.after = from;
      if (Number.isFinite(to)) out.before = to;
    }
    if (cursors[page]) out.cursor = cursors[page];
    return out;
  }

  function filtersChanged() {
    filters.function_id = fnSelect.value;
    filters.status = statusSelect.value;
    filters.range = rangeSelect.value;
    filters.from = fromInput.value;
    filters.to = toInput.value;
    filters.filter = search.value.trim();
    const shown = { ...filters, limit: pageSize === PAGE_SIZE ? "" : String(pageSize) };
    if (shown.range !== "custom") shown.from = shown.to = "";
    setHashQuery("/runs", shown);
    cursors = [null];
    page = 0;
    seen = null;
    generation += 1;
    clear(tbody);
    stop.now();
  }
  for (const el of [fnSelect, statusSelect, rangeSelect, fromInput, toInput]) {
    el.addEventListener("change", filtersChanged);
  }

  newer.addEventListener("click", () => {
    if (page === 0) return;
    page -= 1;
    seen = null;
    generation += 1;
    stop.now();
  });
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors = cursors.slice(0, page + 1);
    cursors.push(nextCursor);
    page += 1;
    seen = null;
    generation += 1;
    stop.now();
  });

  const rows = new Map(); // run id -> {tr, key}

  function row(run) {
    const href = `#/runs/${encodeURIComponent(run.run_id)}`;
    return h(
      "tr.run-row",
      { dataset: { runId: run.run_id, status: run.status }, onclick: () => (location.hash = href) },
      h("td", null, badge(run.status)),
      h("td.mono", null, h("a", { href, title: run.run_id }, shortId(run.run_id))),
      h("td.fn", null, run.function_id),
      h("td", null, when(run.created_at)),
      h("td.duration", null, runDuration(run)),
    );
  }

  function render(runs) {
    custom.hidden = filters.range !== "custom";
    const fresh = new Set();
    const keep = new Map();
    const ordered = runs.map((run) => {
      const key = JSON.stringify(run);
      let entry = rows.get(run.run_id);
      if (!entry || entry.key !== key) {
        const tr = row(run);
        if (entry) entry.tr.replaceWith(tr);
        entry = { tr, key };
      } else {
        // Unchanged: only the clock moves.
        entry.tr.querySelector("time").textContent = when(run.created_at).textContent;
        entry.tr.querySelector(".duration").textContent = runDuration(run);
      }
      if (seen && !seen.has(run.run_id)) fresh.add(run.run_id);
      keep.set(run.run_id, entry);
      return entry.tr;
    });
    rows.clear();
    for (const [id, entry] of keep) rows.set(id, entry);
    tbody.replaceChildren(...ordered);
    for (const id of fresh) rows.get(id).tr.classList.add("fresh");
    seen = new Set([...(seen || []), ...runs.map((r) => r.run_id)]);
    newer.disabled = page === 0;
    older.disabled = !nextCursor;
    pageLabel.textContent = runs.length || page ? `page ${page + 1}` : "";
    live.hidden = page !== 0;
  }

  const stop = poll(async () => {
    const asked = generation;
    let answer;
    try {
      answer = await api.runs(params());
    } catch (error) {
      if (asked !== generation) return 0;
      partial.hidden = true;
      if (error.status === 400 && error.field === "filter") {
        clear(tbody);
        clear(message, h("div.problem", { id: "search-error", role: "alert" }, error.message));
        return POLL_MS;
      }
      clear(message, problem(error.status === 404 ? "This Stepline has no GET /v1/runs." : error));
      return error.status === 401 ? 10_000 : POLL_MS;
    }
    if (asked !== generation) return 0; // the filters changed meanwhile: ask again now
    clear(message);
    const runs = answer.data || [];
    const meta = answer.metadata || {};
    nextCursor = meta.next_cursor || null;
    partial.hidden = !meta.partial;
    if (meta.partial) {
      clear(
        partial,
        h("strong", null, "Partial search: "),
        `looked at runs created down to ${new Date(meta.searched_to).toLocaleString()}; older ones were not searched yet. `,
        h("button.link-button", { type: "button", id: "search-older", onclick: () => older.click() }, "Search older runs →"),
      );
    }
    render(runs); // keyed: unchanged rows are kept, only their clocks move
    if (!runs.length) {
      const anyFilter = filters.function_id || filters.status || filters.range || filters.filter;
      message.append(
        h(
          "div.empty",
          null,
          anyFilter
            ? "No runs match these filters."
            : h("p", null, "No runs yet. Send an event from ", h("a", { href: "#/functions" }, "Functions & apps"), "."),
        ),
      );
    }
    return POLL_MS;
  }, POLL_MS);

  return stop;
}
