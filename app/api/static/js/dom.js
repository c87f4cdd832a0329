// DOM building and formatting helpers. Text always goes in as text nodes, never as HTML.

export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = [el.className, value].filter(Boolean).join(" ");
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key === "value" || (key in el && typeof value !== "string")) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// --- time -----------------------------------------------------------------------------------

export const ms = (iso) => (iso ? Date.parse(iso) : NaN);

export function duration(millis) {
  if (!Number.isFinite(millis)) return "";
  if (millis < 0) millis = 0;
  if (millis < 1000) return `${Math.round(millis)}ms`;
  const s = millis / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${m % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function ago(iso, now = Date.now()) {
  const t = ms(iso);
  if (!Number.isFinite(t)) return "—";
  const diff = now - t;
  if (diff < -1000) return `in ${duration(-diff)}`;
  if (diff < 5000) return "just now";
  if (diff < 60_000) return `${Math.floor(diff / 1000)}s ago`;
  if (diff < 3_600_000) return `${Math.floor(diff / 60_000)}m ago`;
  if (diff < 86_400_000) return `${Math.floor(diff / 3_600_000)}h ago`;
  return absolute(iso);
}

export function absolute(iso) {
  const t = ms(iso);
  if (!Number.isFinite(t)) return "—";
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function clock(iso) {
  return absolute(iso).slice(11);
}

// Today's times as a clock, older ones with their date; relative on hover.
export function stamp(iso) {
  const t = ms(iso);
  if (!Number.isFinite(t)) return "—";
  const today = new Date().toDateString() === new Date(t).toDateString();
  const text = today ? clock(iso) : absolute(iso).slice(0, 19);
  return h("time", { datetime: iso, title: ago(iso) }, text);
}

// A time shown relative, with the exact local time on hover.
export function when(iso) {
  return h("time", { datetime: iso || "", title: absolute(iso) }, ago(iso));
}

// --- bits -------------------------------------------------------------------------------------

const ENDED = new Set(["Completed", "Failed", "Cancelled"]);
export const ended = (status) => ENDED.has(status);

export function badge(status) {
  const known = status || "Unknown";
  return h(`span.badge.status-${known.toLowerCase()}`, { dataset: { status: known } }, known);
}

export function shortId(id) {
  if (!id) return "";
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
}

export function copyButton(text, label = "Copy") {
  return h(
    "button.icon-button",
    {
      type: "button",
      title: `${label}: ${text}`,
      "aria-label": label,
      onclick: async (e) => {
        e.preventDefault();
        e.stopPropagation();
        try {
          await navigator.clipboard.writeText(text);
          toast("Copied");
        } catch {
          toast("Copy failed: the clipboard needs https or localhost", "error");
        }
      },
    },
    icon("copy"),
  );
}

const ICONS = {
  copy: "M5 2h7a1 1 0 0 1 1 1v8h-1.5V3.5H5zM3 5h6.5a1 1 0 0 1 1 1v7a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1zm.5 1.5v6h5.5v-6z",
};

export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

// JSON with light syntax colouring (spans built from text, so payloads can't inject markup).
export function jsonView(value, { label } = {}) {
  const pre = h("pre.json", { tabindex: "0" });
  if (label) pre.setAttribute("aria-label", label);
  if (value === undefined) {
    pre.append(h("span.json-null", null, "undefined"));
    return pre;
  }
  const text = JSON.stringify(value, null, 2) ?? "null";
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const match of text.matchAll(token)) {
    if (match.index > last) pre.append(text.slice(last, match.index));
    const [whole, str, colon, literal, num] = match;
    if (str) {
      pre.append(h(colon ? "span.json-key" : "span.json-string", null, str));
      if (colon) pre.append(colon);
    } else if (literal) {
      pre.append(h(literal === "null" ? "span.json-null" : "span.json-bool", null, literal));
    } else if (num) {
      pre.append(h("span.json-number", null, num));
    } else {
      pre.append(whole);
    }
    last = match.index + whole.length;
  }
  pre.append(text.slice(last));
  return pre;
}

// An error object as SDKs report it: {name, message, stack} (any may be missing).
export function errorView(error) {
  if (error === null || error === undefined) return null;
  if (typeof error !== "object") return h("div.error-box", null, h("div.error-message", null, String(error)));
  const name = error.name || "Error";
  const message = error.message ?? "";
  const rest = { ...error };
  delete rest.name;
  delete rest.message;
  delete rest.stack;
  return h(
    "div.error-box",
    null,
    h("div.error-message", null, h("strong", null, name), message ? `: ${message}` : ""),
    error.stack ? h("pre.stack", null, String(error.stack)) : null,
    Object.keys(rest).length ? jsonView(rest) : null,
  );
}

export function empty(text, ...more) {
  return h("div.empty", null, h("p", null, text), ...more);
}

export function problem(error) {
  return h("div.problem", { role: "alert" }, error && error.message ? error.message : String(error));
}

// --- toasts -------------------------------------------------------------------------------------

export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h(`div.toast.toast-${kind}`, null, text);
  box.append(item);
  setTimeout(() => item.classList.add("leaving"), 3500);
  setTimeout(() => item.remove(), 4000);
}

// --- polling ------------------------------------------------------------------------------------

// Calls `tick` now and every `interval` ms (not overlapping, paused while the tab is hidden)
// until the returned stop function is called. `tick` may return a number to change the interval.
export function poll(tick, interval) {
  let timer = null;
  let stopped = false;
  let running = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (document.hidden) {
      schedule(interval);
      return;
    }
    running = true;
    try {
      const next = await tick();
      if (typeof next === "number") interval = next;
    } catch (error) {
      console.error(error);
    } finally {
      running = false;
    }
    schedule(interval);
  };
  const schedule = (delay) => {
    if (!stopped && timer === null) timer = setTimeout(run, delay);
  };
  const onVisible = () => {
    if (!document.hidden && timer !== null && !running) {
      clearTimeout(timer);
      timer = null;
      run();
    }
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  const stop = () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
  stop.now = () => {
    if (timer !== null && !running) {
      clearTimeout(timer);
      timer = null;
      run();
    }
  };
  return stop;
}

// Route parameters live in the hash: #/runs?status=Failed
export function hashQuery() {
  const hash = location.hash.slice(1);
  const at = hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
}

export function setHashQuery(path, params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  const next = `#${path}${text ? `?${text}` : ""}`;
  if (location.hash !== next) history.replaceState(null, "", next);
}
