// The Thrifty dashboard: fetches each chart's JSON from /dashboard/api/<name> and draws it as
// plain SVG. No library and no other origin: the page works offline and leaks nothing.
// Every drawn mark carries data-key and data-value (the number the ledger gave), so what the
// page shows can be checked against the ledger.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CHARTS = ["spend_over_time", "savings", "cost_per_success", "cost_per_feature", "cost_per_cohort",
  "cost_per_request_type", "cache", "escalation", "budgets", "call_sites", "active_users"];

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function usd(v) {
  if (v === null || v === undefined) return "n/a";
  const n = Number(v);
  if (n === 0) return "$0";
  if (Math.abs(n) >= 100) return "$" + n.toLocaleString("en-US", { maximumFractionDigits: 0 });
  if (Math.abs(n) >= 1) return "$" + n.toFixed(2);
  return "$" + String(Number(n.toPrecision(3)));  // three significant digits: $0.0173, $0.05
}
function pct(v) { return v === null || v === undefined ? "n/a" : (100 * v).toFixed(1) + "%"; }
function label(k) { return k === null || k === undefined ? "(none)" : String(k); }

function filterQuery(extra) {
  const form = document.getElementById("filters");
  const q = new URLSearchParams();
  for (const name of ["tenant", "feature", "model", "tier"]) {
    const v = form.elements[name].value;
    if (v) q.set(name, v);
  }
  for (const name of ["since", "until"]) {
    const v = form.elements[name].value;
    if (v) q.set(name, String(Math.floor(new Date(v).getTime() / 1000)));
  }
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return q.toString();
}

async function fetchJSON(name, extra) {
  const r = await fetch("/dashboard/api/" + name + "?" + filterQuery(extra), { credentials: "same-origin" });
  if (r.status === 401) { window.location.assign("/dashboard"); throw new Error("signed out"); }
  if (!r.ok) throw new Error(name + ": HTTP " + r.status);
  return r.json();
}

// Horizontal bars: items [{key, value, text, cls}], one row each; `limit` draws a dashed line.
function hbars(items, opts) {
  opts = opts || {};
  const row = 22, labelW = 150, width = 420, barW = width - labelW - 130;
  const max = Math.max(opts.max || 0, ...items.map(i => Math.abs(i.value)), 1e-12);
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${Math.max(items.length, 1) * row + 4}`, role: "img" });
  items.forEach((it, n) => {
    const y = n * row + 2, w = Math.max(1, barW * Math.abs(it.value) / max);
    const g = el("svg:g", { "data-key": label(it.key), "data-value": String(it.raw ?? it.value), class: "mark" });
    g.appendChild(el("svg:text", { x: 0, y: y + 14 }, label(it.key).slice(0, 24)));
    g.appendChild(el("svg:rect", { x: labelW, y: y + 3, width: w, height: row - 8, class: "bar " + (it.cls || "") }));
    g.appendChild(el("svg:text", { x: labelW + w + 4, y: y + 14, class: "value" }, it.text));
    svg.appendChild(g);
  });
  if (opts.limit !== undefined) {
    const x = labelW + barW * opts.limit / max;
    svg.appendChild(el("svg:line", { x1: x, x2: x, y1: 0, y2: items.length * row + 4, class: "limit" }));
  }
  return svg;
}

// Vertical bars over time: points [{t, usd, calls}].
function timeBars(points, bucket) {
  const width = 900, height = 180, pad = 40;
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img" });
  const max = Math.max(...points.map(p => Number(p.usd)), 1e-12);
  const w = Math.min(48, Math.max(2, (width - pad) / Math.max(points.length, 1) - 2));
  svg.appendChild(el("svg:line", { x1: pad, x2: width, y1: height, y2: height, class: "axis" }));
  svg.appendChild(el("svg:text", { x: 0, y: 12 }, usd(max)));
  let prev = "";
  points.forEach((p, n) => {
    const h = Math.max(1, (height - 10) * Number(p.usd) / max), x = pad + n * (w + 2);
    const when = new Date(p.t * 1000).toISOString().slice(0, bucket < 86400 ? 16 : 10).replace("T", " ");
    const g = el("svg:g", { "data-key": String(p.t), "data-value": p.usd, class: "mark" });
    const rect = el("svg:rect", { x, y: height - h, width: w, height: h, class: "bar" });
    rect.appendChild(el("svg:title", {}, `${when} UTC: ${usd(p.usd)} over ${p.calls} calls`));
    g.appendChild(rect);
    const newDay = n === 0 || when.slice(0, 10) !== prev.slice(0, 10);
    const short = bucket >= 86400 ? when.slice(5) : newDay ? when.slice(5, 10) : when.slice(11);
    if (n % Math.ceil(points.length / 10) === 0) { g.appendChild(el("svg:text", { x, y: height + 14 }, short)); prev = when; }
    svg.appendChild(g);
  });
  return svg;
}

function table(head, rows) {
  const t = el("table");
  const tr = el("tr");
  head.forEach(h => tr.appendChild(el("th", { class: h.num ? "num" : "" }, h.name)));
  t.appendChild(el("thead")).appendChild(tr);
  const body = t.appendChild(el("tbody"));
  rows.forEach(r => {
    const row = el("tr", { class: "mark", "data-key": r.key, "data-value": r.value });
    r.cells.forEach((c, i) => row.appendChild(el("td", { class: head[i].num ? "num" : "" }, c)));
    body.appendChild(row);
  });
  return t;
}

function total(text, value) { return el("p", { class: "total", "data-total": value }, text); }
function note(text) { return el("p", { class: "note" }, text); }
function empty(text) { return el("p", { class: "empty" }, text || "No calls in this selection."); }

const DRAW = {
  spend_over_time(d) {
    if (!d.points.length) return [empty()];
    return [total(usd(d.total_usd) + " spent", d.total_usd), timeBars(d.points, d.bucket_s),
      note(`per ${{3600: "hour", 86400: "day"}[d.bucket_s] || "week"} (UTC); every row: retries and discarded attempts included`)];
  },
  savings(d) {
    const t = d.total, out = [total(usd(t.saved_usd) + " saved of " + usd(t.baseline_usd), t.saved_usd)];
    const items = [];
    for (const [lever, p] of Object.entries(t.levers)) {
      items.push({ key: lever, value: Number(p.exact_usd), raw: p.exact_usd, text: usd(p.exact_usd) + " exact" });
      if (Number(p.estimated_usd) !== 0)
        items.push({ key: lever + " (est.)", value: Number(p.estimated_usd), raw: p.estimated_usd,
          text: usd(p.estimated_usd) + " estimated", cls: "alt" });
    }
    out.push(items.length ? hbars(items) : empty("No lever acted on these calls."));
    out.push(note(`exact ${usd(t.saved_exact_usd)}, estimated ${usd(t.saved_estimated_usd)}; ` +
      `provider discounts the client had anyway: ${usd(t.provider_discount_usd)} (not counted as saved)`));
    out[out.length - 1].setAttribute("data-provider-discount", t.provider_discount_usd);
    return out;
  },
  cost_per_success(d) {
    if (!d.groups.length) return [empty()];
    const items = [];
    for (const g of d.groups) {
      items.push({ key: label(g.key) + " / call", value: Number(g.cost_per_call_usd || 0), raw: g.cost_per_call_usd,
        text: usd(g.cost_per_call_usd) });
      items.push({ key: label(g.key) + " / success", value: Number(g.cost_per_success_usd || 0),
        raw: g.cost_per_success_usd, text: usd(g.cost_per_success_usd) + ` (${g.successful}/${g.outputs} ok)`, cls: "alt" });
    }
    const t = d.total;
    return [total(usd(t.cost_per_success_usd) + " per successful output", t.cost_per_success_usd), hbars(items),
      note(`failed: ${t.failed.errored} errored, ${t.failed.bad} reported bad, ${t.failed.regenerated} regenerated ` +
        `(within ${d.regeneration_window_s} s); ${t.attempts} discarded attempts paid for`)];
  },
  cost_per_feature(d) { return groups(d); },
  cost_per_cohort(d) { return groups(d); },
  cost_per_request_type(d) {
    const out = groups(d);
    if (!d.stored_bodies) out.push(note("Request types are derived from stored bodies: set ledger.store_bodies."));
    return out;
  },
  cache(d) {
    const items = [
      { key: "exact", value: d.exact_rate || 0, raw: d.exact_rate, text: pct(d.exact_rate) + ` (${d.exact_hits})` },
      { key: "semantic", value: d.semantic_rate || 0, raw: d.semantic_rate, text: pct(d.semantic_rate) + ` (${d.semantic_hits})` },
      { key: "provider prompt cache", value: d.prompt_cache_rate || 0, raw: d.prompt_cache_rate,
        text: pct(d.prompt_cache_rate) + " of prompt tokens", cls: "alt" }];
    return [hbars(items, { max: 1 }), note(`${d.answered_calls} answered calls; ` +
      `${d.prompt_cache_read_tokens} of ${d.prompt_tokens} prompt tokens read from the provider's cache`)];
  },
  escalation(d) {
    if (!d.tiers.length) return [empty()];
    const items = d.tiers.map(t => ({ key: t.tier, value: t.rate || 0, raw: t.rate,
      text: pct(t.rate) + ` (${t.escalated}/${t.calls})`, cls: (t.rate || 0) > 0.3 ? "bad" : "" }));
    return [hbars(items, { max: 1, limit: 0.3 }), note("Dashed: 30%. Above it the tier's model is too small for its traffic.")];
  },
  budgets(d) {
    if (!d.budgets.length) return [empty("No USD budget with a value to show.")];
    const items = d.budgets.map(b => ({ key: b.budget + (b.value && b.value !== "*" ? ": " + b.value : ""),
      value: Number(b.spent_usd) / Number(b.limit_usd), raw: b.spent_usd,
      text: `${usd(b.spent_usd)} of ${usd(b.limit_usd)}, ` + (b.exhausts_in_s === null ? "not burning" :
        b.exhausts_before_reset ? "out in " + duration(b.exhausts_in_s) : "lasts the " + b.window),
      cls: b.exhausts_before_reset ? "bad" : "good" }));
    return [hbars(items, { max: 1, limit: 1 }), note("At the spend rate of the current window so far.")];
  },
  call_sites(d) { return groups(d); },
  active_users(d) {
    if (!d.groups.length) return [empty()];
    return [table([{ name: "month" }, { name: "feature" }, { name: "spend", num: 1 }, { name: "active users", num: 1 },
      { name: "per active user", num: 1 }],
    d.groups.map(g => ({ key: g.month + " " + label(g.feature), value: g.cost_per_active_user_usd,
      cells: [g.month, label(g.feature), usd(g.usd), String(g.active_users), usd(g.cost_per_active_user_usd)] })))];
  },
};

function groups(d) {
  const list = d.groups;
  if (!list.length) return [empty()];
  return [total(usd(d.total_usd), d.total_usd), hbars(list.map(g => ({ key: g.key, value: Number(g.usd), raw: g.usd,
    text: usd(g.usd) + (g.calls !== undefined ? ` · ${g.calls} calls` : ` · ${g.rows} rows`) })))];
}

function duration(s) {
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 2 * 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " days";
}

async function drawChart(name) {
  const section = document.querySelector(`[data-chart="${name}"]`);
  const body = section.querySelector(".body");
  const extra = name === "cost_per_cohort" ? { cohort: section.querySelector("select").value } : {};
  try {
    const data = await fetchJSON(name, extra);
    body.replaceChildren(...DRAW[name](data));
    section.dataset.state = "ready";
  } catch (err) {
    body.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
    section.dataset.state = "error";
  }
}

async function drawAll() {
  const main = document.getElementById("charts");
  main.dataset.state = "loading";
  await Promise.all(CHARTS.map(drawChart));
  main.dataset.state = "ready";
}

async function fillFilters() {
  const found = await fetchJSON("filters");
  const form = document.getElementById("filters");
  for (const name of ["tenant", "feature", "model", "tier"]) {
    const select = form.elements[name];
    for (const v of found[name]) select.appendChild(el("option", { value: v }, v));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); drawAll(); });
  document.querySelector('[data-chart="cost_per_cohort"] select').addEventListener("change",
    () => drawChart("cost_per_cohort"));
  try { await fillFilters(); } catch (err) { /* the charts report their own errors */ }
  await drawAll();
});
