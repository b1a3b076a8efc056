// The workflow console's script: live refresh of the executions list, and the state panel of
// an execution's graph. Execution data only ever reaches the page as textContent.
"use strict";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function seconds(value) {
  if (typeof value !== "number") return "";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

function pretty(text) {
  if (typeof text !== "string") return "";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

function liveExecutions() {
  const table = document.getElementById("executions");
  if (!table || table.dataset.live !== "true") return;
  const every = Math.max(0.5, Number(table.dataset.refresh) || 5) * 1000;
  const url = "/api/executions?" + (table.dataset.query || "");
  const refresh = async () => {
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (response.ok) {
        const data = await response.json();
        // rows_html is escaped on the server (scones.dashboard.pages.executions_rows).
        table.tBodies[0].innerHTML = data.rows_html;
        document.getElementById("updated").textContent = `updated ${data.generated_at}`;
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      }
    } catch (e) { /* the next refresh tries again */ }
  };
  setInterval(refresh, every);
}

function showState(detail, path, node) {
  document.querySelectorAll("#graph g.state.selected").forEach((g) => g.classList.remove("selected"));
  if (node) node.classList.add("selected");
  const state = detail.states[path] || { status: "not_reached", runs: [] };
  document.getElementById("panel-title").textContent = path;
  document.getElementById("panel-hint").textContent = "";
  const body = document.getElementById("panel-body");
  body.replaceChildren();
  body.dataset.path = path;
  const facts = el("dl", "facts");
  const add = (label, value) => {
    facts.append(el("dt", "", label), el("dd", label.toLowerCase().replace(/ /g, "-"), value));
  };
  add("Status", state.status.replace("_", " "));
  add("Runs", state.entered || 0);
  add("Retries", state.retries || 0);
  add("Time", seconds(state.seconds));
  body.append(facts);
  if (!state.runs.length) body.append(el("p", "muted", "This execution did not reach this state."));
  state.runs.forEach((run, index) => {
    const box = el("section", `run ${run.status}`);
    box.append(el("h3", "", `Run ${index + 1}: ${run.status}` + (run.retries ? ` after ${run.retries} retries` : "")));
    const timing = el("p", "muted small", `${run.entered_at || ""} → ${run.exited_at || "…"} (${seconds(run.seconds)})`);
    box.append(timing);
    if (run.error) box.append(el("p", "error", `Error: ${run.error}`));
    if (run.cause) box.append(el("p", "cause", `Cause: ${run.cause}`));
    box.append(el("h4", "", "Input"), el("pre", "input", pretty(run.input)));
    if (run.output !== null) box.append(el("h4", "", "Output"), el("pre", "output", pretty(run.output)));
    body.append(box);
  });
  if (state.entered > state.runs.length) {
    body.append(el("p", "muted", `Showing ${state.runs.length} of ${state.entered} runs.`));
  }
}

async function executionGraph() {
  const graph = document.getElementById("graph");
  if (!graph) return;
  const response = await fetch(graph.dataset.detail, { cache: "no-store" });
  if (!response.ok) return;
  const detail = await response.json();
  for (const [id, path] of Object.entries(detail.nodes)) {
    const node = document.getElementById(id);
    if (!node) continue;
    node.dataset.path = path;
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    const open = () => showState(detail, path, node);
    node.addEventListener("click", open);
    node.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
  }
  const failed = Object.values(detail.states).find((s) => s.status === "failed");
  if (failed) showState(detail, failed.path, document.querySelector(`#graph g.state.failed`));
  const image = document.getElementById("execution-image");
  if (image) image.addEventListener("error", () => image.closest("figure").classList.add("no-image"));
  document.body.dataset.loaded = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  liveExecutions();
  executionGraph();
  if (document.body.dataset.page !== "execution") document.body.dataset.loaded = "true";
});
