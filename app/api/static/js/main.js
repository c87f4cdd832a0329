// The shell: hash routes, the sidebar's health light, the outage banner and the token dialog.
//   #/runs[?function_id&status&range]   runs list          (runs.js)
//   #/runs/<run id>                       run detail         (run.js)
//   #/events                              event stream       (events.js)
//   #/events/<internal id>                one event          (events.js)
//   #/functions                           functions and apps (functions.js)
//   #/bulk                                bulk cancel/replay (bulk.js)
//   #/workers                             workers, beat and the queue (workers.js)
// A view is `mount(container, ...params)` returning an unmount function (stops its polling).

import { api, onUnauthorized, token } from "./api.js";
import { mountBulk } from "./bulk.js";
import { clear, poll, problem } from "./dom.js";
import { mountEvent, mountEvents } from "./events.js";
import { mountFunctions } from "./functions.js";
import { mountRun } from "./run.js";
import { mountRuns } from "./runs.js";
import { mountWorkers } from "./workers.js";

const routes = [
  [/^\/runs\/([^/?]+)/, mountRun, "runs"],
  [/^\/runs\/?(?:\?|$)/, mountRuns, "runs"],
  [/^\/events\/([^/?]+)/, mountEvent, "events"],
  [/^\/events\/?(?:\?|$)/, mountEvents, "events"],
  [/^\/functions\/?(?:\?|$)/, mountFunctions, "functions"],
  [/^\/bulk\/?(?:\?|$)/, mountBulk, "bulk"],
  [/^\/workers\/?(?:\?|$)/, mountWorkers, "workers"],
];

const view = document.getElementById("view");
let unmount = null;

// Views keep their filters in the hash with history.replaceState (no hashchange), so every
// hashchange is a navigation: mount the view afresh.
function route() {
  const hash = location.hash.slice(1) || "/runs";
  if (unmount) unmount();
  unmount = null;
  const match = routes.find(([pattern]) => pattern.test(hash));
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", Boolean(match && link.dataset.nav === match[2]));
  }
  clear(view);
  if (!match) {
    view.append(problem(`No page at #${hash}`));
    return;
  }
  const params = hash.match(match[0]).slice(1).map(decodeURIComponent);
  try {
    unmount = match[1](view, ...params) || null;
  } catch (error) {
    console.error(error);
    view.append(problem(error));
  }
  view.focus({ preventScroll: true });
}

// --- the API token ------------------------------------------------------------------------------

const dialog = document.getElementById("token-dialog");
const input = document.getElementById("token-input");
const errorText = document.getElementById("token-error");
document.getElementById("token-forget").addEventListener("click", () => dialog.close("forget"));
document.getElementById("token-cancel").addEventListener("click", () => dialog.close("cancel"));

function askForToken(reason) {
  return new Promise((resolve) => {
    input.value = token.get();
    errorText.hidden = !reason;
    errorText.textContent = reason || "";
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue === "save" && input.value.trim()) {
          token.set(input.value.trim());
          updateTokenButton();
          resolve(token.get());
        } else {
          if (dialog.returnValue === "forget") {
            token.set("");
            updateTokenButton();
          }
          resolve(null);
        }
      },
      { once: true },
    );
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

onUnauthorized((error) =>
  askForToken(
    token.get()
      ? `The API refused this token (${error.message}). Enter the right one.`
      : "This Stepline needs an API token.",
  ),
);

const tokenButton = document.getElementById("token-button");
function updateTokenButton() {
  tokenButton.textContent = token.get() ? "API token ✓" : "API token";
}
tokenButton.addEventListener("click", async () => {
  if (await askForToken(null)) route(); // reload the view with the new token
});
updateTokenButton();

// --- health -------------------------------------------------------------------------------------

const light = document.getElementById("health");
const outage = document.getElementById("outage");
poll(async () => {
  let state = "down";
  let text = "API unreachable";
  let problems = [];
  try {
    const health = await api.health();
    state = health.redis ? "ok" : "down";
    text = health.redis ? "connected" : "Redis unavailable";
    problems = Array.isArray(health.problems) ? health.problems : [];
  } catch {
    /* the server is down or restarting */
  }
  light.dataset.state = state;
  light.textContent = text;
  // Red banner while beat or every worker is gone: the API answers, but runs stand still.
  outage.textContent = problems.join(" · ");
  outage.hidden = problems.length === 0;
}, 5000);

window.addEventListener("hashchange", route);
route();
