// An app built with the official Inngest TypeScript SDK (inngest@4.24.0, inngest/node), as a user
// would write it. Nothing here knows about Stepline: point it at Stepline the way one points an
// app at the Inngest dev server (INNGEST_DEV=http://127.0.0.1:8288, or INNGEST_BASE_URL with
// INNGEST_SIGNING_KEY for production mode) and run
//
//     node index.js --port 3000
//
// It serves /api/inngest with the same functions as ../py_app.py.

import http from "node:http";
import { Inngest, NonRetriableError, RetryAfterError, referenceFunction } from "inngest";
import { createDefer } from "inngest/experimental";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "tsapp" });

const three = inngest.createFunction(
  { id: "three", retries: 2, triggers: [{ event: "tsapp/three" }] },
  async ({ step }) => {
    const a = await step.run("a", () => 1);
    const b = await step.run("b", () => a + 1);
    const c = await step.run("c", () => b + 1);
    return { sum: a + b + c };
  },
);

const child = inngest.createFunction(
  { id: "child", triggers: [{ event: "tsapp/child" }] },
  async ({ event, step }) => {
    const n = Number(event.data.n ?? 0);
    return { double: await step.run("double", () => n * 2) };
  },
);

const ops = inngest.createFunction(
  { id: "ops", triggers: [{ event: "tsapp/ops" }] },
  async ({ step }) => {
    await step.sleep("nap", "2s");
    const approval = await step.waitForEvent("wait", {
      event: "tsapp/approve",
      if: "async.data.id == event.data.id",
      timeout: "1m",
    });
    const invoked = await step.invoke("call", { function: child, data: { n: 21 } });
    const sent = await step.sendEvent("send", { name: "tsapp/sent", data: { k: 1 } });
    return { approved: approval !== null, invoked, sent };
  },
);

const par = inngest.createFunction(
  { id: "par", triggers: [{ event: "tsapp/par" }] },
  async ({ step }) =>
    Promise.all([step.run("p1", () => "x"), step.run("p2", () => "y")]),
);

const fail = inngest.createFunction(
  {
    id: "fail",
    retries: 1,
    triggers: [{ event: "tsapp/fail" }],
    onFailure: async ({ event }) => ({ saw: event.name }),
  },
  async ({ step }) => {
    await step.run("boom", () => {
      throw new Error("kaput");
    });
  },
);

const nr = inngest.createFunction(
  { id: "nr", triggers: [{ event: "tsapp/nr" }] },
  async () => {
    throw new NonRetriableError("stop now");
  },
);

const ra = inngest.createFunction(
  { id: "ra", triggers: [{ event: "tsapp/ra" }] },
  async () => {
    throw new RetryAfterError("later", "30s");
  },
);

const flow = inngest.createFunction(
  {
    id: "flow",
    concurrency: { limit: 1, key: "event.data.k" },
    debounce: { period: "2s" },
    rateLimit: { limit: 1, period: "10s" },
    idempotency: "event.data.key",
    cancelOn: [{ event: "tsapp/cancel", if: "event.data.id == async.data.id" }],
    triggers: [
      { event: "tsapp/flow", if: "event.data.x > 1" },
      { cron: "*/5 * * * *" },
    ],
  },
  async () => "ok",
);

// --- used by the end-to-end tests (tests/integration/test_sdk_typescript.py) ---

// A step that fails on its first attempt and succeeds on the next.
const flaky = inngest.createFunction(
  { id: "flaky", triggers: [{ event: "tsapp/flaky" }] },
  async ({ step, attempt }) => ({
    succeededOn: await step.run("once", () => {
      if (attempt === 0) throw new Error("first attempt fails");
      return attempt;
    }),
  }),
);

// Invokes an in-process Stepline function (`e2e-child`, tests/integration/functions.py).
const callInproc = inngest.createFunction(
  { id: "call-inproc", triggers: [{ event: "tsapp/call-inproc" }] },
  async ({ event, step }) => ({
    child: await step.invoke("call", {
      function: referenceFunction({ appId: "e2e", functionId: "child" }),
      data: { x: Number(event.data.x ?? 0) },
    }),
  }),
);

// step.sendEvent to an in-process function and to one of this app's own.
const sender = inngest.createFunction(
  { id: "sender", triggers: [{ event: "tsapp/sender" }] },
  async ({ event, step }) =>
    step.sendEvent("send", [
      { name: "e2e/steps", data: { n: 2 } },
      { name: "tsapp/child", data: { n: 4, tag: String(event.data.tag ?? "") } },
    ]),
);

// Parallel steps and a sleep in one Promise.all, then a step using their results.
const fanout = inngest.createFunction(
  { id: "fanout", triggers: [{ event: "tsapp/fanout" }] },
  async ({ step }) => {
    const [a, , b] = await Promise.all([
      step.run("branch-a", () => 10),
      step.sleep("pause", "1s"),
      step.run("branch-b", () => 20),
    ]);
    const total = await step.run("sum", () => a + b);
    return { a, b, total };
  },
);

// A wait that times out (nothing sends tsapp/never), then a step.
const waiter = inngest.createFunction(
  { id: "waiter", triggers: [{ event: "tsapp/waiter" }] },
  async ({ step }) => {
    const got = await step.waitForEvent("wait", { event: "tsapp/never", timeout: "1s" });
    return { got, after: await step.run("after", () => "done") };
  },
);

// NonRetriableError thrown inside a step.
const nrstep = inngest.createFunction(
  { id: "nrstep", triggers: [{ event: "tsapp/nrstep" }] },
  async ({ step }) => {
    await step.run("refuse", () => {
      throw new NonRetriableError("step says no");
    });
  },
);

// Signals: a wait for the signal named in the event, beside a step (two ops in one 206 reply).
// `onConflict` from the event, so the tests can make two runs compete for one name.
const signal = inngest.createFunction(
  { id: "signal", triggers: [{ event: "tsapp/signal" }] },
  async ({ event, step }) => {
    const opts = { signal: event.data.signal, timeout: event.data.timeout ?? "1m" };
    if (event.data.conflict) opts.onConflict = event.data.conflict;
    const [, got] = await Promise.all([
      step.run("before", () => 1),
      step.waitForSignal("wait", opts),
    ]);
    return got;
  },
);

// step.fetch after a step: the engine makes the request (to a local server in the tests).
const fetcher = inngest.createFunction(
  { id: "fetcher", triggers: [{ event: "tsapp/fetcher" }] },
  async ({ event, step }) => {
    await step.run("first", () => 1);
    const response = await step.fetch(event.data.url, {
      method: event.data.method ?? "GET",
      headers: { "x-test": "ts" },
      body: event.data.body,
    });
    return { status: response.status, body: await response.text(), type: response.headers.get("content-type") };
  },
);

// step.ai.infer through the engine (OpenAI-style server stand-in), then step.ai.wrap (in the SDK).
const ai = inngest.createFunction(
  { id: "ai", triggers: [{ event: "tsapp/ai" }] },
  async ({ event, step }) => {
    const answer = await step.ai.infer("ask", {
      model: step.ai.models.openai({ model: "gpt-test", apiKey: "sk-test", baseUrl: event.data.base }),
      body: { messages: [{ role: "user", content: "hi" }] },
    });
    const wrapped = await step.ai.wrap("wrapped", async (text) => text.toUpperCase(), "done");
    return { content: answer.choices[0].message.content, wrapped };
  },
);

// Five synchronous steps: with checkpointing, one call of the function.
const five = inngest.createFunction(
  { id: "five", triggers: [{ event: "tsapp/five" }] },
  async ({ step }) => {
    let total = 0;
    for (const n of [1, 2, 3, 4, 5]) total += await step.run(`s${n}`, () => n);
    return { total };
  },
);

// The same with the SDK's `checkpointing.bufferedSteps` option: it reports steps three at a time
// (the last ones with the function's result), so five steps cost one call and one checkpoint.
const fiveBuffered = inngest.createFunction(
  { id: "five-buffered", checkpointing: { bufferedSteps: 3 }, triggers: [{ event: "tsapp/five-buffered" }] },
  async ({ step }) => {
    let total = 0;
    for (const n of [1, 2, 3, 4, 5]) total += await step.run(`s${n}`, () => n);
    return { total };
  },
);

// `n` synchronous steps (bench/sdk_app.py --sdk ts): with checkpointing, one call per run.
const steps = inngest.createFunction(
  { id: "steps", retries: 0, triggers: [{ event: "tsapp/steps" }] },
  async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < Number(event.data.n); i++) total = await step.run(`s${i}`, () => total + i);
    return total;
  },
);

// The same, reporting its steps ten at a time (`checkpointing.bufferedSteps`, an SDK option).
const stepsBuffered = inngest.createFunction(
  {
    id: "steps-buffered",
    retries: 0,
    checkpointing: { bufferedSteps: 10 },
    triggers: [{ event: "tsapp/steps-buffered" }],
  },
  async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < Number(event.data.n); i++) total = await step.run(`s${i}`, () => total + i);
    return total;
  },
);

// A feature Stepline does not implement: defer() (a lazy DeferAdd op). The run must fail at
// once, naming the feature, never retried and never dropping the op.
const later = createDefer(inngest, { id: "later" }, async () => "later");
const deferrer = inngest.createFunction(
  { id: "deferrer", triggers: [{ event: "tsapp/deferrer" }] },
  async ({ step, defer }) => {
    await step.run("first", () => 1);
    defer("d", { function: later, data: { a: 1 } });
    return "ok";
  },
);

const FUNCTIONS = [
  three, child, ops, par, fail, nr, ra, flow, flaky, callInproc, sender, fanout, waiter, nrstep,
  signal, fetcher, ai, five, fiveBuffered, steps, stepsBuffered, later, deferrer,
];

const portFlag = process.argv.indexOf("--port");
const port = Number(portFlag >= 0 ? process.argv[portFlag + 1] : process.env.PORT || 3000);

// App code sending an event with `inngest.send`, as a web handler would.
async function send(req, res) {
  let raw = "";
  for await (const chunk of req) raw += chunk;
  try {
    const { name, data } = JSON.parse(raw);
    const { ids } = await inngest.send({ name, data: data ?? {} });
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ ids }));
  } catch (err) {
    res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify({ error: String(err) }));
  }
}

// App code sending a signal with `inngest.sendSignal`.
async function sendSignal(req, res) {
  let raw = "";
  for await (const chunk of req) raw += chunk;
  try {
    const { signal, data } = JSON.parse(raw);
    const { runId } = await inngest.sendSignal({ signal, data });
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ runId: runId ?? null }));
  } catch (err) {
    res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify({ error: String(err) }));
  }
}

// How many times the engine called a function for each run (checkpointing: 1 for a run of steps).
const calls = new Map();

const handler = serve({ client: inngest, functions: FUNCTIONS });
http
  .createServer((req, res) => {
    if (req.url.startsWith("/api/inngest")) {
      const run = req.headers["x-run-id"];
      if (req.method === "POST" && run) calls.set(run, (calls.get(run) ?? 0) + 1);
      return handler(req, res);
    }
    if (req.url === "/send" && req.method === "POST") return send(req, res);
    if (req.url === "/signal" && req.method === "POST") return sendSignal(req, res);
    if (req.url.startsWith("/calls/")) {
      const count = calls.get(decodeURIComponent(req.url.slice("/calls/".length))) ?? 0;
      return res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ count }));
    }
    res.writeHead(404).end();
  })
  .listen(port, "127.0.0.1");
