// The review page: label unsure photos with buttons or the keyboard (b, m, n, s, u).
// Every label is saved at once through the JSON API; undo withdraws this session's last one.
"use strict";

const state = { queue: [], index: 0, undo: [], labels: [], busy: false };

function $(id) { return document.getElementById(id); }

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) { throw new Error(data.message || response.statusText); }
  return data;
}

function showProgress(progress) {
  $("progress").textContent =
    `${progress.labelled} of ${progress.total} labelled (${progress.pending} pending)`;
}

function current() { return state.queue[state.index]; }

function show() {
  const item = current();
  $("current").hidden = !item;
  $("done").hidden = Boolean(item);
  if (!item) { return; }
  $("photo").src = item.image_url;
  $("photo").dataset.key = item.key;
  $("guess").textContent =
    `Model's guess: ${item.predicted_class} (${(100 * item.confidence).toFixed(1)}%)`;
  $("meta").textContent = `item ${item.key} · model version ${item.model_version || "?"} · ` +
    `seen ${item.observed_at.slice(0, 19).replace("T", " ")} UTC`;
}

function reviewer() { return $("reviewer").value.trim() || undefined; }

async function label(name) {
  const item = current();
  if (!item || state.busy) { return; }
  state.busy = true;
  try {
    const data = await api(`/api/review/items/${item.key}/label`, { label: name, by: reviewer() });
    state.undo.push(item);
    state.queue.splice(state.index, 1);
    if (state.index >= state.queue.length) { state.index = 0; }
    showProgress(data.progress);
    $("message").textContent = "";
    show();
  } catch (error) {
    $("message").textContent = error.message;
  } finally {
    state.busy = false;
  }
}

function skip() {
  if (state.queue.length === 0) { return; }
  state.index = (state.index + 1) % state.queue.length;
  show();
}

async function undo() {
  const item = state.undo[state.undo.length - 1];
  if (!item || state.busy) { return; }
  state.busy = true;
  try {
    const data = await api(`/api/review/items/${item.key}/undo`, { by: reviewer() });
    state.undo.pop();
    state.queue.splice(state.index, 0, item);
    showProgress(data.progress);
    $("message").textContent = "";
    show();
  } catch (error) {
    $("message").textContent = error.message;
  } finally {
    state.busy = false;
  }
}

const KEYS = { b: "bicycle", m: "motorcycle", n: "neither" };

document.addEventListener("keydown", (event) => {
  if (event.target === $("reviewer") || event.ctrlKey || event.metaKey || event.altKey) { return; }
  const key = event.key.toLowerCase();
  if (KEYS[key] && state.labels.includes(KEYS[key])) { label(KEYS[key]); }
  else if (key === "s") { skip(); }
  else if (key === "u") { undo(); }
  else { return; }
  event.preventDefault();
});

async function start() {
  try {
    const progress = await api("/api/review/progress");
    state.labels = progress.labels;
    $("reviewer").value = progress.reviewer;
    showProgress(progress);
    for (const button of document.querySelectorAll("[data-label]")) {
      button.hidden = !state.labels.includes(button.dataset.label);
      button.addEventListener("click", () => label(button.dataset.label));
    }
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    const data = await api("/api/review/items?status=pending&limit=500");
    state.queue = data.items;
    show();
    document.body.dataset.ready = "true";
  } catch (error) {
    $("message").textContent = error.message;
  }
}

start();
