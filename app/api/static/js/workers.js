// #/workers: is anything alive to run jobs? Each worker (host, pid, pool, concurrency, queues,
// the jobs it runs now, its last heartbeat), beat's last tick, the queue (jobs, held, overdue,
// the oldest overdue; per Celery queue the jobs waiting for a worker and the oldest one's age)
// and red warnings when none is alive. Polls GET /v1/workers.

import { api } from "./api.js";
import { clear, h, poll, problem } from "./dom.js";

const POLL_MS = 2000;

export function mountWorkers(root) {
  const message = h("div.list-message");
  const warnings = h("div.warnings", { id: "worker-warnings", role: "alert" });
  const queue = h("dl.meta.queue-stats", { id: "queue-stats" });
  const queues = h("div.table-wrap", { id: "queues" });
  const beat = h("div", { id: "beat" });
  const table = h("div.table-wrap", { id: "workers" });
  root.append(
    h("header.page-head", null, h("h1", null, "Workers")),
    message,
    warnings,
    h("h2", null, "Queue"),
    queue,
    queues,
    h("h2", null, "Beat"),
    beat,
    h("h2", null, "Workers"),
    table,
  );

  return poll(async () => {
    let data;
    try {
      data = (await api.workers()).data;
    } catch (error) {
      clear(message, problem(error));
      return 5000;
    }
    clear(message);
    render(data);
    return POLL_MS;
  }, POLL_MS);

  function render(data) {
    clear(warnings, (data.warnings || []).map((text) => h("p.warning", null, text)));
    const q = data.queue || {};
    clear(
      queue,
      fact("Jobs queued", String(q.jobs ?? 0), "queue-jobs"),
      fact("Held by a worker", String(q.held ?? 0), "queue-held"),
      fact("Overdue", String(q.overdue ?? 0), "queue-overdue"),
      fact("Oldest overdue", q.oldest_overdue_seconds == null ? "—" : seconds(q.oldest_overdue_seconds), "queue-oldest"),
    );
    clear(
      queues,
      h(
        "table",
        null,
        h("thead", null, h("tr", null, ["Celery queue", "Waiting for a worker", "Oldest waiting"].map((t) => h("th", null, t)))),
        h(
          "tbody",
          null,
          (q.queues || []).map((item) =>
            h(
              "tr",
              { dataset: { queue: item.name } },
              h("td", null, item.name),
              h("td.queue-waiting", null, `${item.waiting}${item.complete ? "" : "+"}`),
              h("td.queue-oldest-waiting", null, item.oldest_waiting_seconds == null ? "—" : seconds(item.oldest_waiting_seconds)),
            ),
          ),
        ),
      ),
    );
    const b = data.beat || {};
    clear(
      beat,
      h(
        "p",
        { class: b.alive ? "" : "warning-text", dataset: { alive: String(Boolean(b.alive)) } },
        h("span.light", { class: b.alive ? "ok" : "down" }),
        b.last_tick == null
          ? "Beat has never ticked: start `stepline beat` (sleeps, retries, crons and crash recovery need it)."
          : `Last tick ${seconds(b.age_seconds)} ago${b.alive ? "" : " — beat is not running"}.`,
      ),
    );
    const workers = (data.workers && data.workers.items) || [];
    if (!workers.length) {
      clear(table, h("div.empty", null, "No worker has reported in the last hour: start `stepline worker`."));
      return;
    }
    clear(
      table,
      h(
        "table",
        null,
        h(
          "thead",
          null,
          h("tr", null, ["", "Host", "PID", "Pool", "Concurrency", "Queues", "Current jobs", "Last heartbeat", "Up since"].map((t) => h("th", null, t))),
        ),
        h(
          "tbody",
          null,
          workers.map((w) =>
            h(
              "tr.worker-row",
              { dataset: { id: w.id, alive: String(w.alive) } },
              h("td", null, h("span.light", { class: w.alive ? "ok" : "down", title: w.alive ? "alive" : "gone" })),
              h("td.mono", null, w.host),
              h("td.mono", null, String(w.pid)),
              h("td", null, w.pool || "—"),
              h("td", null, String(w.concurrency || "—")),
              h("td", null, (w.queues || []).join(", ") || "—"),
              h("td.jobs", { title: (w.jobs || []).join("\n") }, jobsCell(w)),
              h("td", null, `${seconds(w.age_seconds)} ago`),
              h("td", null, new Date(w.started_at).toISOString().replace("T", " ").slice(0, 19)),
            ),
          ),
        ),
      ),
    );
  }
}

function jobsCell(worker) {
  const jobs = worker.jobs || [];
  if (!worker.job_count) return "idle";
  const runs = jobs.slice(0, 3).map((job) => {
    const run = job.split(":")[0];
    // A run's jobs are named after it ("<run id>:start", "<run id>:retry:..."); others
    // (event:<id>, archive jobs) are shown as they are.
    if (!/^[0-9A-Z]{26}$/.test(run)) return h("span.mono", { title: job }, job.slice(0, 24));
    return h("a.mono", { href: `#/runs/${encodeURIComponent(run)}`, title: job }, run.slice(-8));
  });
  const more = worker.job_count > runs.length ? ` +${worker.job_count - runs.length}` : "";
  return [`${worker.job_count}: `, ...runs.flatMap((link, i) => (i ? [", ", link] : [link])), more];
}

function fact(label, value, id) {
  return h("div", null, h("dt", null, label), h("dd", { id }, value));
}

function seconds(value) {
  if (value == null) return "—";
  if (value < 1) return "<1 s";
  if (value < 120) return `${Math.round(value)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  return `${Math.round(value / 3600)} h`;
}
