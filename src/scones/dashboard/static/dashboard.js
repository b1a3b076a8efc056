// The scones dashboard: polls /api/state and draws everything as inline SVG (no libraries).
// Text from the server goes in with textContent only: capture and execution data are untrusted.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CLASS_COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096"];
let refreshSeconds = 5;

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  if (parent) parent.appendChild(el);
  return el;
}

function htmlEl(name, text, parent, className) {
  const el = document.createElement(name);
  if (text !== undefined && text !== null) el.textContent = String(text);
  if (className) el.className = className;
  if (parent) parent.appendChild(el);
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits || 3);
  return String(value);
}

function timeLabel(seconds, span) {
  const iso = new Date(seconds * 1000).toISOString();
  return span > 2 * 86400 ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 19);
}

function drawOverview(state) {
  const traffic = state.traffic;
  const records = traffic.records;
  const box = document.getElementById("overview");
  clear(box);
  const cards = [
    ["records", records.total],
    ["predictions", records.with_predictions],
    ["passed", records.passed],
    ["under threshold " + traffic.threshold, records.under_threshold],
    ["share under", records.under_threshold_share === null ? null : (100 * records.under_threshold_share).toFixed(1) + "%"],
    ["unknown content type", records.unknown_content_type],
    ["undecodable images", records.undecodable_images],
    ["malformed lines", traffic.reader.malformed_lines],
  ];
  for (const [label, value] of cards) {
    const card = htmlEl("div", null, box, "card");
    htmlEl("div", fmt(value), card, "value");
    htmlEl("div", label, card, "label");
  }
  const message = document.getElementById("message");
  const windowText = state.window_hours ? "last " + state.window_hours + " h" : "all time";
  message.textContent = (traffic.message ? traffic.message + " · " : "") +
    "endpoint " + state.endpoint_name + " · " + windowText + " · capture " + state.capture_uri;
}

function drawConfidence(traffic) {
  const chart = document.getElementById("confidence-chart");
  clear(chart);
  const W = 900, H = 260, left = 48, right = 40, top = 12, bottom = 30;
  const passed = traffic.points.passed, under = traffic.points.under;
  const all = passed.concat(under);
  const y = (p) => top + (1 - p) * (H - top - bottom);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    svgEl("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: "grid" }, chart);
    svgEl("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, chart).textContent = tick.toFixed(2);
  }
  svgEl("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }, chart);
  svgEl("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }, chart);
  if (all.length === 0) {
    svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, chart).textContent = "no traffic in the window";
  }
  let t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  if (!(t1 > t0)) { t0 -= 30; t1 += 30; }
  const span = t1 - t0;
  const x = (t) => left + ((t - t0) / span) * (W - left - right);
  if (all.length) {
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      svgEl("text", { x: x(t), y: H - bottom + 16, "text-anchor": "middle" }, chart).textContent = timeLabel(t, span);
    }
  }
  const threshold = svgEl("line", { x1: left, x2: W - right, y1: y(traffic.threshold), y2: y(traffic.threshold), class: "threshold" }, chart);
  threshold.setAttribute("data-threshold", traffic.threshold);
  for (const [t, p] of passed) svgEl("circle", { cx: x(t).toFixed(1), cy: y(p).toFixed(1), r: 2.5, class: "passed point" }, chart);
  for (const [t, p] of under) svgEl("circle", { cx: x(t).toFixed(1), cy: y(p).toFixed(1), r: 3, class: "under point" }, chart);
}

function drawClassMix(traffic) {
  const chart = document.getElementById("class-mix-chart");
  const legend = document.getElementById("class-mix-legend");
  clear(chart);
  clear(legend);
  const W = 440, H = 220, left = 36, right = 8, top = 8, bottom = 24;
  const names = traffic.class_names;
  const buckets = traffic.series.buckets.filter((b) => b.predictions > 0);
  svgEl("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }, chart);
  svgEl("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }, chart);
  if (!buckets.length) {
    svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, chart).textContent = "no predictions yet";
    return;
  }
  const slot = (W - left - right) / buckets.length;
  const plotH = H - top - bottom;
  buckets.forEach((bucket, i) => {
    let offset = 0;
    names.forEach((name, k) => {
      const share = (bucket.class_counts[name] || 0) / bucket.predictions;
      if (share <= 0) return;
      const rect = svgEl("rect", {
        x: (left + i * slot + slot * 0.05).toFixed(1), width: Math.max(slot * 0.9, 1).toFixed(1),
        y: (top + (1 - offset - share) * plotH).toFixed(1), height: (share * plotH).toFixed(1),
        fill: CLASS_COLOURS[k % CLASS_COLOURS.length], class: "bar",
      }, chart);
      svgEl("title", {}, rect).textContent = bucket.start + ": " + name + " " + (100 * share).toFixed(1) + "%";
      offset += share;
    });
  });
  svgEl("text", { x: left, y: H - 6 }, chart).textContent = buckets[0].start.slice(0, 16).replace("T", " ");
  svgEl("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, chart).textContent = "100%";
  names.forEach((name, k) => {
    const item = htmlEl("span", null, legend);
    const swatch = htmlEl("i", null, item);
    swatch.style.background = CLASS_COLOURS[k % CLASS_COLOURS.length];
    item.appendChild(document.createTextNode(name + " " + fmt(traffic.class_mix.counts[name])));
  });
}

function drawDrift(traffic) {
  const drift = traffic.drift;
  const badge = document.getElementById("drift-status");
  badge.className = "badge " + drift.status;
  badge.textContent = { ok: "drift: within bounds", violations: "drift: " + drift.violations + " violation(s)", skipped: "drift: not tested" }[drift.status] || drift.status;
  const reason = [drift.skipped_reason].concat(drift.notes || []).filter(Boolean).join(" · ");
  document.getElementById("drift-reason").textContent = reason;
  const body = document.querySelector("#drift-table tbody");
  clear(body);
  for (const check of drift.checks) {
    const row = htmlEl("tr", null, body, check.violated ? "bad" : "good");
    htmlEl("td", check.feature_name, row);
    htmlEl("td", check.check.toUpperCase(), row);
    htmlEl("td", fmt(check.value, 4) + (check.p_value !== null ? " (p " + check.p_value.toExponential(2) + ")" : ""), row);
    htmlEl("td", check.threshold, row);
    htmlEl("td", check.violated ? "violation" : "ok", row);
  }
}

function drawExecutions(executions) {
  document.getElementById("executions-message").textContent = executions.message ||
    Object.entries(executions.counts || {}).map(([k, v]) => k + ": " + v).join(" · ");
  const body = document.querySelector("#executions-table tbody");
  clear(body);
  for (const item of executions.items) {
    const row = htmlEl("tr", null, body, "execution");
    htmlEl("td", (item.started_at || "").replace("T", " ").slice(0, 19), row);
    const link = htmlEl("a", item.name, htmlEl("td", null, row));
    link.href = "/executions/" + encodeURIComponent(item.execution_id); // its graph in the console
    htmlEl("td", item.status, row, item.status);
    htmlEl("td", item.error, row);
    htmlEl("td", item.cause, row);
  }
}

function drawGallery(traffic) {
  const gallery = document.getElementById("gallery");
  const wanted = traffic.gallery.map((item) => item.event_id).join(",");
  if (gallery.dataset.ids === wanted) return; // unchanged: keep loaded images
  gallery.dataset.ids = wanted;
  clear(gallery);
  if (!traffic.gallery.length) htmlEl("p", "no request under the threshold in the window", gallery, "muted");
  for (const item of traffic.gallery) {
    const figure = htmlEl("figure", null, gallery, "failed-image");
    figure.dataset.eventId = item.event_id;
    if (item.image_url) {
      const img = htmlEl("img", null, figure);
      img.alt = "request " + item.event_id;
      img.src = item.image_url;
    } else {
      htmlEl("div", "not decodable", figure, "missing");
    }
    htmlEl("figcaption", item.time.replace("T", " ").slice(0, 19) + " · " + item.predicted_class +
      " " + (100 * item.confidence).toFixed(1) + "%" + (item.inference_id ? " · " + item.inference_id : ""), figure);
  }
}

async function refresh() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error("GET /api/state: HTTP " + response.status);
    const state = await response.json();
    refreshSeconds = state.refresh_seconds || refreshSeconds;
    drawOverview(state);
    drawConfidence(state.traffic);
    drawClassMix(state.traffic);
    drawDrift(state.traffic);
    drawExecutions(state.executions);
    drawGallery(state.traffic);
    document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    document.body.dataset.loaded = "true";
  } catch (error) {
    document.getElementById("updated").textContent = "refresh failed: " + error.message;
  } finally {
    setTimeout(refresh, refreshSeconds * 1000);
  }
}

document.addEventListener("DOMContentLoaded", refresh);
