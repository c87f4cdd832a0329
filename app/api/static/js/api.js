// The one place that talks HTTP. Every call goes to this origin's public API:
//   /v1/...      the REST API (docs/openapi.yaml), with `Authorization: Bearer <token>` once set
//   /e/<key>     the event API, as SDKs send events
// A 401 from /v1 asks the user for a token (see main.js) and retries once with it.
// GETs remember each URL's ETag and send If-None-Match, so an unchanged poll costs a 304.

const TOKEN_KEY = "stepline.token";
const EVENT_KEY = "stepline.eventKey";

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && (body.error || body.message)) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
  }
}

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY) || "",
  set(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    declined = false;
  },
};

export const eventKey = {
  get: () => localStorage.getItem(EVENT_KEY) || "dev",
  set: (value) => localStorage.setItem(EVENT_KEY, value),
};

let askToken = async () => null; // replaced by main.js with the dialog
let asking = null; // one prompt at a time, shared by every request that got a 401

export function onUnauthorized(prompt) {
  askToken = prompt;
}

const etags = new Map(); // url -> {etag, body}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function send(url, { method = "GET", body, auth = true, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && token.get()) headers.Authorization = `Bearer ${token.get()}`;
  const cached = method === "GET" ? etags.get(url) : undefined;
  if (cached) headers["If-None-Match"] = cached.etag;
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    cache: "no-store",
    signal,
  });
  if (response.status === 304 && cached) return { body: cached.body, fresh: false };
  let parsed = null;
  const text = await response.text();
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: text.slice(0, 300) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  const etag = response.headers.get("ETag");
  if (method === "GET" && etag) etags.set(url, { etag, body: parsed });
  return { body: parsed, fresh: true };
}

// A /v1 call. On 401 it asks for a token (one dialog shared by every waiting call) and tries
// again with it, until the token works or the user declines; after declining, calls fail at
// once until a token is entered with the sidebar's button.
let declined = false;

async function v1(path, options = {}) {
  const url = `/v1${path}`;
  for (;;) {
    try {
      return await send(url, options);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || declined) throw error;
      asking ||= Promise.resolve(askToken(error)).finally(() => {
        asking = null;
      });
      if (!(await asking)) {
        declined = true;
        throw error;
      }
    }
  }
}

const enc = encodeURIComponent;

// `get*` answers the body (`{data, metadata}`) plus `fresh`: false when the server said 304.
async function getJSON(path, params, options) {
  const { body, fresh } = await v1(path + query(params), options);
  return { ...body, fresh };
}

async function postJSON(path, body) {
  return (await v1(path, { method: "POST", body: body === undefined ? {} : body })).body;
}

export const api = {
  runs: (params, options) => getJSON("/runs", params, options),
  run: (runId, options) => getJSON(`/runs/${enc(runId)}`, null, options),
  cancel: (runId) => postJSON(`/runs/${enc(runId)}/cancel`),
  rerun: (runId) => postJSON(`/runs/${enc(runId)}/rerun`),
  replay: (runId, fromStep) => postJSON(`/runs/${enc(runId)}/replay`, fromStep ? { from_step: fromStep } : {}),
  events: (params, options) => getJSON("/events", params, options),
  event: (eventId) => getJSON(`/events/${enc(eventId)}`),
  eventRuns: (eventId, options) => getJSON(`/events/${enc(eventId)}/runs`, null, options),
  functions: (params) => getJSON("/functions", params),
  apps: () => getJSON("/apps"),
  workers: (options) => getJSON("/workers", null, options),
  syncApp: (appId) => postJSON(`/apps/${enc(appId)}/sync`),
  syncUrl: (url) => postJSON("/apps/sync", { url }),
  bulks: (params, options) => getJSON("/bulk", params, options),
  startBulk: (spec) => postJSON("/bulk", spec),
  stopBulk: (bulkId) => postJSON(`/bulk/${enc(bulkId)}/stop`),
  async health() {
    try {
      return (await send("/health", { auth: false })).body;
    } catch (error) {
      if (error instanceof ApiError) return { status: error.status, redis: false };
      throw error;
    }
  },
  // POST /invoke/<function id>: one run of that function whatever its triggers; answers {id}.
  async invoke(functionId, data, user) {
    const body = user ? { data, user } : { data };
    return (await send(`/invoke/${enc(functionId)}`, { method: "POST", body })).body;
  },
  // POST /e/<key>: `events` is one event or an array; answers {ids, status}.
  async sendEvents(events, key = eventKey.get()) {
    return (await send(`/e/${enc(key)}`, { method: "POST", body: events, auth: false })).body;
  },
};
