"use strict";
// The dashboard is an ordinary client of the public job API (docs/api.md and
// docs/analytics.md): it POSTs a statistic, then long-polls /api/get_results/<id>
// until the job is done. No build step: plain browser JavaScript plus the Chart.js
// and topojson-client bundles and map.js, served by the app (server/dashboard.py)
// and loaded before this file. What the page shows is described in docs/dashboard.md.

const WAIT_SECONDS = 20;          // one long poll; the server caps it at 30
const JOB_DEADLINE_MS = 120000;   // a job still running after this is reported
const NATIONAL = "National";
const UNIT = " %";                // every question of the data is a percent of adults
const COLORS = {
  best: "#2a9d8f", worst: "#e63946", other: "#a0aab8", national: "#1d3557",
  line: "#f4a261", state: "#457b9d", band: "rgba(69, 123, 157, 0.22)",
};
const MEASURES = {
  mean: {label: "mean of all rows", axis: "% of adults (mean of all rows)"},
  estimate: {label: "estimate (Total rows weighted by sample size)",
             axis: "% of adults (estimate, Total rows)"},
};
// Honour the user's setting; the browser test also uses it so bars do not move
// while it clicks them.
const ANIMATION = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;

const $ = (id) => document.getElementById(id);
const fmt = (x) => (x === null || x === undefined ? "n/a" : x.toFixed(2));

const view = {
  directions: {},   // question text -> "lower" | "higher" | null
  states: [],       // every location the server knows, sorted
  years: [],        // every year of the data, ascending
  shapes: [],       // the map's states: [{name, d}]
  question: "", state: "", from: null, to: null, measure: "mean",
  overview: null,   // {means, estimates, global} of the question and years shown
  detail: null,     // {state, trend, estimates, breakdown, national} shown
  tasks: {},        // lane -> number of its latest task (a newer one wins)
};

class ApiError extends Error {}

// One request; any failure becomes an ApiError with a sentence a person can read.
async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`Cannot reach the server (${err.message}). Is it running?`);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON: reported below
  }
  if (!response.ok) {
    const reason = payload && payload.reason ? payload.reason : response.statusText;
    throw new ApiError(`The server answered ${response.status}: ${reason}`);
  }
  if (payload === null) throw new ApiError(`${path} did not answer JSON.`);
  return payload;
}

// Submit one statistic and long-poll it; resolves to the job's data.
async function runJob(endpoint, body) {
  const {job_id: id} = await api(`/api/${endpoint}`, body);
  const deadline = Date.now() + JOB_DEADLINE_MS;
  while (Date.now() < deadline) {
    const answer = await api(`/api/get_results/${id}?wait=${WAIT_SECONDS}`);
    if (answer.status === "done") return answer.data;
    if (answer.status === "error") throw new ApiError(`Job ${id} (${endpoint}) failed: ${answer.reason}`);
  }
  throw new ApiError(`Job ${id} (${endpoint}) is still running after ${JOB_DEADLINE_MS / 1000} s; ` +
                     "the server may be overloaded. Try again later.");
}

function setStatus(text, done, total) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = total === undefined;
  if (total !== undefined) {
    bar.max = total;
    bar.value = done;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// The year fields of every job: the range chosen, or none when it is the whole data.
function yearFields() {
  const fields = {};
  if (view.from !== null && view.from !== view.years[0]) fields.year_start = view.from;
  if (view.to !== null && view.to !== view.years[view.years.length - 1]) fields.year_end = view.to;
  return fields;
}

// Run named jobs at once ({key: [endpoint, body]}), showing progress while they
// run; resolves to {key: data}, or null when a newer task of the same lane took
// over meanwhile (the overview and a state's detail are separate lanes).
async function runJobs(lane, label, jobs) {
  const task = (view.tasks[lane] || 0) + 1;
  view.tasks[lane] = task;
  const current = () => task === view.tasks[lane];
  const started = performance.now();
  const total = Object.keys(jobs).length;
  let done = 0;
  const show = () => {
    if (!current()) return;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`${label}: ${done} of ${total} jobs finished (${seconds} s)…`, done, total);
  };
  showError("");
  show();
  const timer = setInterval(show, 200);
  try {
    const results = await Promise.all(Object.entries(jobs).map(async ([key, [endpoint, body]]) => {
      const data = await runJob(endpoint, body);
      done += 1;
      show();
      return [key, data];
    }));
    if (!current()) return null;
    setStatus(`${label}: done in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    return Object.fromEntries(results);
  } catch (err) {
    if (!current()) return null;
    setStatus(`${label}: failed.`);
    throw err;
  } finally {
    clearInterval(timer);
  }
}

// Keys of state_mean_by_category are Python's str() of a tuple of strings, e.g.
// "('Income', '$15,000 - $24,999')"; repr() quotes with ' or " and escapes with \.
function parsePythonTuple(key) {
  const parts = [];
  for (const m of key.matchAll(/'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g)) {
    const raw = m[1] !== undefined ? m[1] : m[2];
    parts.push(raw.replace(/\\(.)/g, (_, c) => ({n: "\n", t: "\t", r: "\r"})[c] || c));
  }
  return parts;
}

function replaceChart(canvasId, config) {
  const old = Chart.getChart(canvasId);
  if (old) old.destroy();
  return new Chart($(canvasId), config);
}

function legendItem(text, color, line = false) {
  return {text, fillStyle: line ? "transparent" : color, strokeStyle: color,
          lineWidth: line ? 2 : 0, lineDash: line ? [6, 4] : []};
}

// ---- what is shown: the chosen statistic of every location, in the API's order --

// {location: value} of the chosen statistic, in the server's order (ascending).
function shownValues() {
  const o = view.overview;
  if (view.measure === "estimate") {
    return Object.fromEntries(Object.entries(o.estimates).map(([s, e]) => [s, e ? e.estimate : null]));
  }
  return o.means;
}

// The one national reference: the data's own "National" rows with the same
// statistic and years; without such a location, the mean over all rows (mean only).
function nationalReference() {
  const values = shownValues();
  if (NATIONAL in values && values[NATIONAL] !== null) {
    return {value: values[NATIONAL], text: `National = the data's own "National" rows ` +
      `(the CDC's nationwide figure), same statistic and years; not an average of the states.`};
  }
  if (view.measure === "mean" && view.overview.global) {
    return {value: view.overview.global.global_mean,
            text: "National = the mean over all rows of this question in these years."};
  }
  return {value: null, text: "This data has no national figure for this statistic."};
}

function yearsText() {
  if (view.from === null) return "all years";  // a data file without years
  return view.from === view.to ? `${view.from}` : `${view.from}–${view.to}`;
}

// ---- the map --------------------------------------------------------------------

function drawMap() {
  const values = shownValues();
  const onMap = new Set(view.shapes.map((s) => s.name));
  const others = Object.keys(values).filter((s) => !onMap.has(s));
  const classes = StateMap.classify(Object.values(values));
  const describe = (v) => (v === null || v === undefined ? "no data" : `${fmt(v)}${UNIT}`);
  StateMap.draw($("map"), view.shapes, (s) => values[s], classes.colorOf, describe,
                view.state, pickState);
  StateMap.legend($("legend"), classes.bins, fmt, UNIT);
  // Territories and National, with the map's colours, in the answer's order.
  $("other-list").replaceChildren(...others.map((s) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = classes.colorOf(values[s]);
    item.dataset.state = s;
    item.dataset.value = values[s] === null ? "" : String(values[s]);
    item.append(swatch, `${s}: ${describe(values[s])}`);
    item.addEventListener("click", () => pickState(s));
    return item;
  }));
  const direction = view.directions[view.question];
  $("map-heading").textContent = `Map: ${MEASURES[view.measure].label}, ${yearsText()}`;
  $("map-note").textContent = (direction ? `${direction === "lower" ? "Lower" : "Higher"} is better. ` : "") +
    "Darker is higher. Click a state for its trend and breakdown.";
  $("reference").textContent = nationalReference().text;
}

// ---- the ranking ------------------------------------------------------------------

function drawRanking() {
  const values = shownValues();
  const states = Object.keys(values).filter((s) => values[s] !== null);  // ascending
  const direction = view.directions[view.question];
  // Best and worst 5 of what is shown, by the question's direction (as best5/worst5).
  const lowFirst = direction === "lower";
  const best = new Set(direction ? (lowFirst ? states.slice(0, 5) : states.slice(-5)) : []);
  const worst = new Set(direction ? (lowFirst ? states.slice(-5) : states.slice(0, 5)) : []);
  const colorOf = (s) => (best.has(s) ? COLORS.best : worst.has(s) ? COLORS.worst
                          : s === NATIONAL ? COLORS.national : COLORS.other);
  const datasets = [{
    type: "bar", label: MEASURES[view.measure].label, data: states.map((s) => values[s]),
    backgroundColor: states.map(colorOf), order: 2,
    borderColor: "#111", borderWidth: states.map((s) => (s === view.state ? 3 : 0)),
  }];
  const legend = [];
  if (direction) legend.push(legendItem("Best 5", COLORS.best), legendItem("Worst 5", COLORS.worst));
  legend.push(legendItem("Other locations", COLORS.other));
  if (NATIONAL in values) legend.push(legendItem(NATIONAL, COLORS.national));
  const reference = nationalReference();
  if (reference.value !== null) {
    const label = `National (${fmt(reference.value)})`;
    datasets.push({type: "line", label, data: states.map(() => reference.value), order: 1,
                   borderColor: COLORS.line, borderDash: [6, 4], borderWidth: 2, pointRadius: 0});
    legend.push(legendItem(label, COLORS.line, true));
  }
  // On a phone the bars lie down, so that 55 names stay readable.
  const narrow = window.matchMedia("(max-width: 700px)").matches;
  const [names, numbers] = narrow ? ["y", "x"] : ["x", "y"];
  const chart = replaceChart("ranking", {
    data: {labels: states, datasets},
    options: {
      indexAxis: names, responsive: true, maintainAspectRatio: false,
      animation: ANIMATION && {duration: 400},
      interaction: {mode: "index", intersect: false},
      scales: {
        [names]: {ticks: {autoSkip: false, font: {size: 10},
                          ...(narrow ? {} : {maxRotation: 70, minRotation: 70})},
                  title: {display: true, text: "Location"}},
        [numbers]: {beginAtZero: true, position: narrow ? "top" : "left",
                    title: {display: true, text: MEASURES[view.measure].axis}},
      },
      plugins: {
        legend: {labels: {generateLabels: () => legend}, onClick: null},
        tooltip: {callbacks: {
          title: (items) => items[0].label,
          label: (item) => (item.dataset.type === "line" ? item.dataset.label
            : `${fmt(item.parsed[numbers])}${UNIT} — rank ${item.dataIndex + 1} of ${states.length}`),
          footer: () => "Click to see this location's trend and breakdown",
        }},
      },
      onClick: (event, _elements, c) => {
        const hit = c.getElementsAtEventForMode(event, "index", {intersect: false}, false);
        if (hit.length) pickState(states[hit[0].index]);
      },
      onHover: (event, elements) => {
        if (event.native) event.native.target.style.cursor = elements.length ? "pointer" : "default";
      },
    },
  });
  chart.canvas.dataset.question = view.question;
  $("ranking-heading").textContent = `All locations ranked: ${MEASURES[view.measure].label}, ${yearsText()}`;
  $("ranking-note").textContent = direction
    ? `${direction === "lower" ? "Lower" : "Higher"} is better: the best 5 are green, ` +
      `the worst 5 red. ${states.length} locations, lowest first.`
    : `This question has no better or worse direction, so no best or worst 5 are marked. ` +
      `${states.length} locations, lowest first.`;
}

// ---- the selected state -------------------------------------------------------------

function describeEstimate(e) {
  if (!e) return "no Total row with a sample size and both confidence limits in these years";
  return `${fmt(e.estimate)}${UNIT} (95 % CI ${fmt(e.ci_low)}–${fmt(e.ci_high)}), ` +
         `${e.rows} row${e.rows === 1 ? "" : "s"}, sample size ${e.sample_size}`;
}

function figure(list, term, text, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = text;
  dd.dataset.value = value === null || value === undefined ? "" : String(value);
  list.append(dt, dd);
  return dd;
}

function drawFigures(state) {
  const o = view.overview;
  const list = $("estimate");
  list.replaceChildren();
  const estimate = o.estimates[state] ?? null;
  figure(list, "Estimate", describeEstimate(estimate), estimate && estimate.estimate).id = "figure-estimate";
  const mean = o.means[state] ?? null;
  figure(list, "Mean of all rows", mean === null ? "no data" : `${fmt(mean)}${UNIT}`, mean).id = "figure-mean";
  const reference = nationalReference();
  figure(list, "National", reference.value === null ? "n/a"
    : `${fmt(reference.value)}${UNIT} (${MEASURES[view.measure].label})`, reference.value).id = "figure-national";
  const value = shownValues()[state] ?? null;
  const diff = $("diff");
  if (value === null || reference.value === null || state === NATIONAL) {
    diff.textContent = "The estimate weights the Total rows by their sample size; the mean " +
      "averages every row of every stratification (docs/analytics.md).";
    return;
  }
  const gap = value - reference.value;
  const side = gap > 0 ? "above" : gap < 0 ? "below" : "exactly at";
  diff.textContent = `Difference from National (${MEASURES[view.measure].label}): ` +
    `${gap > 0 ? "+" : ""}${fmt(gap)} points; ${state} is ${side} National. ` +
    "The estimate weights the Total rows by their sample size; the mean averages every " +
    "row of every stratification.";
}

// The plain mean per year (state_trend) and the estimate per year with its 95 %
// interval as a band (state_estimate of each single year).
function trendRows() {
  const d = view.detail;
  const years = view.years.filter((y) => y >= view.from && y <= view.to &&
    (String(y) in d.trend || d.estimates[y]));
  return years.map((y) => {
    const e = d.estimates[y];
    return {year: y, mean: d.trend[String(y)] ?? null, estimate: e ? e.estimate : null,
            ci_low: e ? e.ci_low : null, ci_high: e ? e.ci_high : null};
  });
}

function drawTrend(state) {
  const rows = trendRows();
  const series = (key) => rows.map((r) => r[key]);
  const chart = replaceChart("trend", {
    type: "line",
    data: {labels: rows.map((r) => String(r.year)), datasets: [
      // The band joins the intervals of the years that have an estimate (a year
      // without one is bridged, as the lines are; the points mark the real years).
      {label: "95 % CI low", data: series("ci_low"), borderWidth: 0, pointRadius: 0,
       fill: false, spanGaps: true},
      {label: "95 % interval of the estimate", data: series("ci_high"), borderWidth: 0,
       pointRadius: 0, backgroundColor: COLORS.band, fill: "-1", spanGaps: true},
      {label: "Estimate (Total rows)", data: series("estimate"), borderColor: COLORS.state,
       backgroundColor: COLORS.state, spanGaps: true},
      {label: "Mean of all rows", data: series("mean"), borderColor: COLORS.line,
       backgroundColor: COLORS.line, borderDash: [6, 4], spanGaps: true},
    ]},
    options: {
      responsive: true, maintainAspectRatio: false, animation: ANIMATION && {duration: 300},
      interaction: {mode: "index", intersect: false},
      scales: {
        x: {title: {display: true, text: "Year (YearStart)"}},
        y: {title: {display: true, text: "% of adults"}},
      },
      plugins: {
        legend: {labels: {filter: (item) => item.datasetIndex !== 0}},
        tooltip: {filter: (item) => item.datasetIndex !== 0 && item.parsed.y !== null,
                  callbacks: {label: (item) => `${item.dataset.label}: ${fmt(item.parsed.y)}${UNIT}`}},
      },
    },
  });
  chart.canvas.dataset.state = state;
}

// Horizontal grouped bars: one row per stratification, the state's bar beside the
// national one; horizontal so that long labels stay readable.
function drawBreakdown(state, byCategory, national) {
  const keys = Object.keys(byCategory);  // ordered by (category, stratification)
  const labels = keys.map((k) => {
    const [category, strat] = parsePythonTuple(k);
    return category === strat ? strat : `${category}: ${strat}`;
  });
  const datasets = [{label: state, data: keys.map((k) => byCategory[k]),
                     backgroundColor: state === NATIONAL ? COLORS.national : COLORS.state}];
  if (national) {
    datasets.push({label: NATIONAL, data: keys.map((k) => national[k] ?? null),
                   backgroundColor: COLORS.other});
  }
  $("breakdown").parentElement.style.height = `${80 + labels.length * datasets.length * 11}px`;
  const chart = replaceChart("breakdown", {
    type: "bar",
    data: {labels, datasets},
    options: {
      indexAxis: "y", responsive: true, maintainAspectRatio: false,
      animation: ANIMATION && {duration: 400},
      interaction: {mode: "index", intersect: false},
      scales: {
        x: {beginAtZero: true, position: "top",
            title: {display: true, text: "% of adults (mean of the rows of each group)"}},
        y: {ticks: {autoSkip: false, font: {size: 11}}},
      },
      plugins: {tooltip: {callbacks: {label: (item) => `${item.dataset.label}: ${fmt(item.parsed.x)}${UNIT}`}}},
    },
  });
  chart.canvas.dataset.state = state;
}

// ---- CSV export of what is shown ----------------------------------------------------

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function download(name, header, rows) {
  const text = [header, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function fileStem() {
  return `lestats-${yearsText()}`;
}

// The values on the map and in the ranking, exactly as the API answered them.
function exportMap() {
  const o = view.overview;
  if (view.measure === "estimate") {
    const keys = ["estimate", "ci_low", "ci_high", "rows", "sample_size"];
    download(`${fileStem()}-estimates.csv`, ["location", ...keys],
             Object.entries(o.estimates).map(([s, e]) => [s, ...keys.map((k) => (e ? e[k] : null))]));
  } else {
    download(`${fileStem()}-means.csv`, ["location", "mean"],
             Object.entries(o.means).map(([s, m]) => [s, m]));
  }
}

function exportTrend() {
  const keys = ["year", "mean", "estimate", "ci_low", "ci_high"];
  download(`${fileStem()}-${view.detail.state}-trend.csv`, keys,
           trendRows().map((r) => keys.map((k) => r[k])));
}

// ---- the view in the address (shareable) ---------------------------------------------

function writeUrl() {
  const params = new URLSearchParams();
  if (view.question) params.set("question", view.question);
  if (view.state) params.set("state", view.state);
  if (view.from !== null) params.set("from", String(view.from));
  if (view.to !== null) params.set("to", String(view.to));
  params.set("measure", view.measure);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

function readUrl(questions) {
  const params = new URLSearchParams(location.search);
  const year = (name, fallback) => {
    const y = Number(params.get(name));
    return view.years.includes(y) ? y : fallback;
  };
  const wanted = params.get("question");
  // Preselected on first load: the obesity question when the data has it.
  view.question = questions.includes(wanted) ? wanted
    : questions.find((q) => /have obesity/.test(q)) || questions[0] || "";
  view.state = view.states.includes(params.get("state")) ? params.get("state") : "";
  view.from = year("from", view.years[0] ?? null);
  view.to = year("to", view.years[view.years.length - 1] ?? null);
  if (view.from !== null && view.from > view.to) [view.from, view.to] = [view.to, view.from];
  view.measure = params.get("measure") in MEASURES ? params.get("measure") : "mean";
}

function syncControls() {
  $("question").value = view.question;
  $("state").value = view.state;
  $("year-start").value = String(view.from);
  $("year-end").value = String(view.to);
  $("measure").value = view.measure;
}

// ---- loading --------------------------------------------------------------------------

async function refresh() {
  writeUrl();
  syncControls();
  const question = view.question;
  if (!question) return;
  const years = yearFields();
  const jobs = {means: ["states_mean", {question, ...years}],
                estimates: ["states_estimate", {question, ...years}]};
  if (!view.states.includes(NATIONAL)) jobs.global = ["global_mean", {question, ...years}];
  try {
    const r = await runJobs("overview", `All locations, ${yearsText()}`, jobs);
    if (r === null) return;
    view.overview = r;
    $("map-section").hidden = false;  // before drawing, so the charts get their size
    $("ranking-section").hidden = false;
    redraw();
    await loadState();
  } catch (err) {
    showError(err.message);
  }
}

function redraw() {
  writeUrl();
  drawMap();
  drawRanking();
  if (view.detail && view.detail.state === view.state) drawFigures(view.state);
}

async function loadState() {
  const {question, state} = view;
  $("detail-section").hidden = !state;
  if (!state || !view.overview) return;
  const years = yearFields();
  const jobs = {trend: ["state_trend", {question, state, ...years}],
                breakdown: ["state_mean_by_category", {question, state, ...years}]};
  if (state !== NATIONAL && view.states.includes(NATIONAL)) {
    jobs.national = ["state_mean_by_category", {question, state: NATIONAL, ...years}];
  }
  for (const y of view.years.filter((y) => y >= view.from && y <= view.to)) {
    jobs[`estimate ${y}`] = ["state_estimate", {question, state, year_start: y, year_end: y}];
  }
  try {
    const r = await runJobs("detail", `${state}, ${yearsText()}`, jobs);
    if (r === null) return;
    const estimates = {};
    for (const y of view.years) {
      if (`estimate ${y}` in r) estimates[y] = r[`estimate ${y}`][state];
    }
    view.detail = {state, trend: r.trend[state], estimates};
    $("detail-heading").textContent = `${state}, ${yearsText()}`;
    $("detail-section").hidden = false;  // before drawing, so the charts get their size
    drawFigures(state);
    drawTrend(state);
    drawBreakdown(state, r.breakdown[state], r.national ? r.national[NATIONAL] : null);
  } catch (err) {
    showError(err.message);
  }
}

function pickState(state) {
  view.state = state;
  syncControls();
  writeUrl();
  if (view.overview) {
    drawMap();
    drawRanking();
  }
  loadState();
}

// A library did not load: ask its URL why (server/dashboard.py answers a JSON reason).
async function libraryProblem() {
  const missing = typeof Chart === "undefined" ? "chart.umd.min.js" : "topojson-client.min.js";
  const response = await fetch(`/static/${missing}`).catch(() => null);
  const payload = response && await response.json().catch(() => null);
  return `Charts cannot be drawn: ${payload?.reason || "the chart library did not load."}`;
}

function fillSelect(select, options) {
  select.replaceChildren(...options.map(([text, value]) => new Option(text, value)));
}

async function start() {
  try {
    const [info, questions, years] = await Promise.all(
      [api("/api/info"), api("/api/questions"), api("/api/years")]);
    if (typeof Chart === "undefined" || typeof topojson === "undefined") {
      showError(await libraryProblem());
      setStatus("");
      return;
    }
    view.shapes = await StateMap.loadShapes();
    view.states = info.states || [];
    view.years = years.years;
    $("synthetic").hidden = !info.synthetic;
    const file = String(info.file).split(/[\\/]/).pop();  // the name, not the server's path
    $("source").textContent = `${file}: ${info.rows_loaded} rows used, ` +
      `${info.rows_ignored} without a value, ${view.states.length} locations, ` +
      `years ${years.first}–${years.last}, ${info.workers} worker processes`;
    for (const {text, direction} of questions.questions) view.directions[text] = direction;
    fillSelect($("question"), questions.questions.map(({text, direction}) =>
      [text + (direction ? ` (${direction} is better)` : ""), text]));
    fillSelect($("year-start"), view.years.map((y) => [String(y), String(y)]));
    fillSelect($("year-end"), view.years.map((y) => [String(y), String(y)]));
    fillSelect($("state"), [["— choose a state —", ""], ...view.states.map((s) => [s, s])]);
    readUrl(questions.questions.map((q) => q.text));
    $("question").disabled = false;
    $("question").addEventListener("change", (e) => { view.question = e.target.value; refresh(); });
    $("year-start").addEventListener("change", (e) => {
      view.from = Number(e.target.value);
      if (view.from > view.to) view.to = view.from;
      refresh();
    });
    $("year-end").addEventListener("change", (e) => {
      view.to = Number(e.target.value);
      if (view.to < view.from) view.from = view.to;
      refresh();
    });
    $("measure").addEventListener("change", (e) => { view.measure = e.target.value; redraw(); });
    $("state").addEventListener("change", (e) => pickState(e.target.value));
    $("export-map").addEventListener("click", exportMap);
    $("export-trend").addEventListener("click", exportTrend);
    await refresh();
  } catch (err) {
    setStatus("");
    showError(err.message);
  }
}

start();
