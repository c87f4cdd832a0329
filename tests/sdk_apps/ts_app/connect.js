// A worker built with the official Inngest TypeScript SDK's `connect()` (inngest@4.24.0), as a
// user would write it: it dials out to Stepline instead of serving HTTP. Nothing here knows
// about Stepline: point it at Stepline as at the Inngest dev server and run
//
//     NODE_OPTIONS=--experimental-websocket INNGEST_DEV=http://127.0.0.1:8288 node connect.js
//
// (Node 20 has no global WebSocket without that flag.) CONNECT_APP_ID names the app (default
// `tsconn`), CONNECT_INSTANCE the worker. Same functions as ../py_connect.py.

import { appendFileSync } from "node:fs";
import { Inngest, NonRetriableError } from "inngest";
import { connect } from "inngest/connect";
import { createDefer } from "inngest/experimental";

const inngest = new Inngest({ id: process.env.CONNECT_APP_ID || "tsconn" });
const app = inngest.id;

const three = inngest.createFunction(
  { id: "three", triggers: [{ event: `${app}/three` }] },
  async ({ step }) => {
    const a = await step.run("a", () => 1);
    const b = await step.run("b", () => a + 1);
    const c = await step.run("c", () => b + 1);
    return { sum: a + b + c };
  },
);

const ops = inngest.createFunction(
  { id: "ops", triggers: [{ event: `${app}/ops` }] },
  async ({ step }) => {
    const first = await step.run("first", () => "one");
    await step.sleep("nap", "1s");
    const approval = await step.waitForEvent("wait", {
      event: `${app}/approve`,
      if: "async.data.id == event.data.id",
      timeout: "1m",
    });
    const late = await step.waitForEvent("late", { event: `${app}/never`, timeout: "1s" });
    return { first, approved: approval !== null, late };
  },
);

// Which worker process ran the step (load sharing).
const who = inngest.createFunction(
  { id: "who", triggers: [{ event: `${app}/who` }] },
  async ({ step }) =>
    step.run("pid", async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return process.pid;
    }),
);

// Its step notes the worker's pid in `marker`, then stalls on the first attempt (the test kills
// that worker there); a retry returns at once.
const slow = inngest.createFunction(
  { id: "slow", retries: 3, triggers: [{ event: `${app}/slow` }] },
  async ({ event, step, attempt }) => ({
    ran_on: await step.run("work", async () => {
      appendFileSync(event.data.marker, `${process.pid}\n`);
      if (attempt === 0) await new Promise((resolve) => setTimeout(resolve, 120_000));
      return process.pid;
    }),
  }),
);

// A step of a few seconds, noted in `marker` when it starts (the gateway restarts then).
const nap = inngest.createFunction(
  { id: "nap", triggers: [{ event: `${app}/nap` }] },
  async ({ event, step }) =>
    step.run("doze", async () => {
      appendFileSync(event.data.marker, `${process.pid}\n`);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      return "rested";
    }),
);

const par = inngest.createFunction(
  { id: "par", triggers: [{ event: `${app}/par` }] },
  async ({ step }) => Promise.all([step.run("p1", () => "x"), step.run("p2", () => "y")]),
);

// Invokes this app's `three`; sends an event from a step.
const caller = inngest.createFunction(
  { id: "caller", triggers: [{ event: `${app}/caller` }] },
  async ({ step }) => {
    const invoked = await step.invoke("call", { function: three, data: {} });
    const sent = await step.sendEvent("send", { name: `${app}/sent`, data: { k: 1 } });
    return { invoked, sent: sent.ids.length };
  },
);

const flaky = inngest.createFunction(
  { id: "flaky", triggers: [{ event: `${app}/flaky` }] },
  async ({ step, attempt }) => ({
    succeeded_on: await step.run("once", () => {
      if (attempt === 0) throw new Error("first attempt fails");
      return attempt;
    }),
  }),
);

const nr = inngest.createFunction(
  {
    id: "nr",
    triggers: [{ event: `${app}/nr` }],
    onFailure: async ({ event }) => ({ saw: event.name }),
  },
  async () => {
    throw new NonRetriableError("stop now");
  },
);

// step.waitForSignal, which Stepline does not implement yet: the run fails at once.
// step.ai.infer: the engine makes the request (to `event.data.base`, a local stand-in).
const ai = inngest.createFunction(
  { id: "ai", triggers: [{ event: `${app}/ai` }] },
  async ({ event, step }) => {
    const answer = await step.ai.infer("ask", {
      model: step.ai.models.openai({ model: "gpt-test", apiKey: "sk-test", baseUrl: `${event.data.base}/` }),
      body: { messages: [{ role: "user", content: "hi" }] },
    });
    return { content: answer.choices[0].message.content };
  },
);

// step.fetch: the engine makes the request (to `event.data.url`, a local stand-in).
const fetcher = inngest.createFunction(
  { id: "fetcher", triggers: [{ event: `${app}/fetcher` }] },
  async ({ event, step }) => {
    const response = await step.fetch(event.data.url);
    return { status: response.status, body: await response.text() };
  },
);

// A wait for a signal, resumed by POST /v1/signals.
const signal = inngest.createFunction(
  { id: "signal", triggers: [{ event: `${app}/signal` }] },
  async ({ event, step }) => step.waitForSignal("wait", { signal: event.data.signal, timeout: "1m" }),
);

// defer(), which Stepline does not implement: the run fails at once.
const later = createDefer(inngest, { id: "later" }, async () => "later");
const lacking = inngest.createFunction(
  { id: "lacking", triggers: [{ event: `${app}/lacking` }] },
  async ({ defer }) => {
    defer("d", { function: later, data: {} });
    return "ok";
  },
);

const FUNCTIONS = [
  three, ops, who, slow, nap, par, caller, flaky, nr, ai, fetcher, signal, later, lacking,
];

await connect({
  apps: [{ client: inngest, functions: FUNCTIONS }],
  instanceId: process.env.CONNECT_INSTANCE,
});
