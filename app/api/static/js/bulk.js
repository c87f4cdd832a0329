// #/bulk: cancel or replay every run a filter selects, as background jobs (POST /v1/bulk).
// The form counts first (dry run), then starts; the list polls each operation's progress
// (GET /v1/bulk) and stops a running one (POST /v1/bulk/<id>/stop).

import { api } from "./api.js";
import { clear, h, poll, problem, toast, when } from "./dom.js";

const POLL_MS = 1000;
const STATUSES = {
  cancel: ["", "Queued", "Running"],
  replay: ["", "Failed", "Cancelled", "Completed"],
};

function epoch(value) {
  const at = Date.parse(value);
  return Number.isFinite(at) ? at : undefined;
}

export function mountBulk(root) {
  const action = h(
    "select",
    { id: "bulk-action", "aria-label": "Action" },
    h("option", { value: "replay" }, "Replay"),
    h("option", { value: "cancel" }, "Cancel"),
  );
  const fnSelect = h("select", { id: "bulk-function", "aria-label": "Function" }, h("option", { value: "" }, "All functions"));
  const status = h("select", { id: "bulk-status", "aria-label": "Status" });
  const after = h("input", { type: "datetime-local", id: "bulk-after", "aria-label": "Created from", step: "1" });
  const before = h("input", { type: "datetime-local", id: "bulk-before", "aria-label": "Created before", step: "1" });
  const filter = h("input.search", {
    type: "search",
    id: "bulk-filter",
    "aria-label": "Filter (CEL)",
    placeholder: 'Filter: event.data.plan == "pro" && error.message.contains("timeout")',
    spellcheck: "false",
  });
  const count = h("button.button.ghost", { type: "button", id: "bulk-count" }, "Count (dry run)");
  const start = h("button.button.primary", { type: "submit", id: "bulk-start" }, "Start");
  const result = h("div.bulk-result", { id: "bulk-result", role: "status" });
  const list = h("div.bulk-list", { id: "bulk-list" });
  const message = h("div.list-message");

  function fillStatuses() {
    const keep = status.value;
    clear(
      status,
      STATUSES[action.value].map((s) => h("option", { value: s }, s || (action.value === "cancel" ? "Queued or Running" : "Any ended status"))),
    );
    status.value = STATUSES[action.value].includes(keep) ? keep : action.value === "replay" ? "Failed" : "";
  }
  fillStatuses();
  action.addEventListener("change", fillStatuses);

  api
    .functions()
    .then(({ data }) => fnSelect.append(...(data || []).map((fn) => fn.id).sort().map((id) => h("option", { value: id }, id))))
    .catch(() => {});

  function spec() {
    return {
      action: action.value,
      function_id: fnSelect.value || undefined,
      status: status.value || undefined,
      after: epoch(after.value),
      before: epoch(before.value),
      filter: filter.value.trim() || undefined,
    };
  }

  async function dryRun() {
    try {
      const { data } = await api.startBulk({ ...spec(), dry_run: true });
      clear(
        result,
        h("strong", { id: "bulk-matched" }, `${data.exact ? "" : "at least "}${data.matched}`),
        ` run${data.matched === 1 ? "" : "s"} would be ${action.value === "cancel" ? "cancelled" : "replayed"}.`,
      );
      return data;
    } catch (error) {
      clear(result, h("span.error-text", { id: "bulk-error" }, error.message));
      return null;
    }
  }
  count.addEventListener("click", dryRun);

  const form = h(
    "form.bulk-form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const counted = await dryRun();
        if (!counted) return;
        const verb = action.value === "cancel" ? "Cancel" : "Replay";
        if (!window.confirm(`${verb} ${counted.exact ? "" : "at least "}${counted.matched} runs?`)) return;
        try {
          const { data } = await api.startBulk(spec());
          toast(`Bulk ${action.value} started`);
          clear(result, "Started ", h("span.mono", null, data.id), ".");
          stop.now();
        } catch (error) {
          clear(result, h("span.error-text", { id: "bulk-error" }, error.message));
        }
      },
    },
    h("div.filters", null, action, fnSelect, status, h("span.custom-range", null, after, "→", before)),
    h("div.search-row", null, filter, count, start),
    result,
  );

  root.append(
    h("header.page-head", null, h("h1", null, "Bulk operations")),
    h(
      "p.muted",
      null,
      "Cancel or replay every run a filter selects (the search language of Runs), in the background: " +
        "progress survives worker restarts, and each run is handled once.",
    ),
    form,
    message,
    list,
  );

  function card(op) {
    const total = Math.max(op.estimate, op.matched, 1);
    const percent = op.state === "done" ? 100 : Math.min(100, Math.round((op.matched / total) * 100));
    const what = [op.function_id || "all functions", op.status || (op.action === "cancel" ? "live runs" : "ended runs")];
    if (op.filter) what.push(op.filter);
    return h(
      "section.bulk-card",
      { dataset: { bulkId: op.id, state: op.state } },
      h(
        "div.bulk-head",
        null,
        h("strong", null, op.action === "cancel" ? "Cancel" : "Replay"),
        h("span.badge", { dataset: { state: op.state }, class: `state-${op.state}` }, op.state),
        h("span.muted", null, what.join(" · ")),
        op.state === "running"
          ? h(
              "button.button.ghost.bulk-stop",
              {
                type: "button",
                onclick: async () => {
                  try {
                    await api.stopBulk(op.id);
                    toast("Stopped");
                  } catch (error) {
                    toast(error.message, "error");
                  }
                  stop.now();
                },
              },
              "Stop",
            )
          : null,
      ),
      h("div.progress", { role: "progressbar", "aria-valuenow": String(percent), "aria-valuemin": "0", "aria-valuemax": "100" }, h("div.progress-bar", { style: { width: `${percent}%` } })),
      h(
        "div.bulk-counts",
        null,
        h("span.count-matched", null, `${op.matched} of ~${op.estimate} matched`),
        h("span.count-done", null, `${op.done} done`),
        h("span.count-failed", null, `${op.failed} failed`),
        h("span.count-skipped", null, `${op.skipped} skipped`),
        h("span.muted", null, "started ", when(op.created_at)),
      ),
    );
  }

  const stop = poll(async () => {
    try {
      const { data } = await api.bulks({ limit: 20 });
      clear(message);
      clear(list, (data || []).length ? data.map(card) : h("div.empty", null, "No bulk operations yet."));
    } catch (error) {
      clear(message, problem(error));
    }
    return POLL_MS;
  }, POLL_MS);
  return stop;
}
