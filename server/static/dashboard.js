"use strict";
// The dashboard is an ordinary client of the public job API (docs/api.md, "Jobs"): it POSTs a
// statistic, then long-polls /api/get_results/<id>?wait=… until the job is done.
// No build step: plain browser JavaScript plus the Chart.js UMD bundle served by
// the app (server/dashboard.py), loaded before this file.

const WAIT_SECONDS = 20;          // one long poll; the server caps it at 30
const JOB_DEADLINE_MS = 120000;   // a job still running after this is reported
const NATIONAL = "National";
const COLORS = {
  best: "#2a9d8f", worst: "#e63946", other: "#a0aab8", national: "#1d3557",
  line: "#f4a261", state: "#457b9d",
};
// Honour the user's setting; the browser test also uses it so bars do not move
// while it clicks them.
const ANIMATION = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;

const $ = (id) => document.getElementById(id);
const fmt = (x) => (x === null || x === undefined ? "n/a" : x.toFixed(2));

const view = {
  directions: {},   // question text -> "lower" | "higher" | null
  states: [],       // every location the server knows, sorted
  question: "",     // the question the ranking shows (or is loading)
  state: "",        // the state the breakdown shows (or is loading)
  task: 0,          // the latest task owns the status line
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

// Run named jobs at once ({key: [endpoint, body]}), showing progress while they
// run; resolves to {key: data}, or null when a newer task took over meanwhile.
async function runJobs(label, jobs) {
  const task = ++view.task;
  const current = () => task === view.task;
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

function drawRanking(question, means, best, worst, nationalMean) {
  const states = Object.keys(means);  // the server's order: ascending mean
  const colorOf = (s) => (s in best ? COLORS.best : s in worst ? COLORS.worst
                          : s === NATIONAL ? COLORS.national : COLORS.other);
  const datasets = [{
    type: "bar", label: "Mean", data: states.map((s) => means[s]),
    backgroundColor: states.map(colorOf), order: 2,
  }];
  const legend = [];
  if (Object.keys(best).length) {
    legend.push(legendItem("Best 5", COLORS.best), legendItem("Worst 5", COLORS.worst));
  }
  legend.push(legendItem("Other states", COLORS.other));
  if (NATIONAL in means) legend.push(legendItem(NATIONAL, COLORS.national));
  if (nationalMean !== null) {
    const label = `National mean (${fmt(nationalMean)})`;
    datasets.push({type: "line", label, data: states.map(() => nationalMean), order: 1,
                   borderColor: COLORS.line, borderDash: [6, 4], borderWidth: 2, pointRadius: 0});
    legend.push(legendItem(label, COLORS.line, true));
  }
  const chart = replaceChart("ranking", {
    data: {labels: states, datasets},
    options: {
      responsive: true, maintainAspectRatio: false, animation: ANIMATION && {duration: 400},
      interaction: {mode: "index", intersect: false},
      scales: {
        x: {ticks: {autoSkip: false, maxRotation: 70, minRotation: 70, font: {size: 10}}},
        y: {beginAtZero: true, title: {display: true, text: "Mean of Data_Value (%)"}},
      },
      plugins: {
        legend: {labels: {generateLabels: () => legend}, onClick: null},
        tooltip: {callbacks: {
          title: (items) => items[0].label,
          label: (item) => (item.dataset.type === "line" ? item.dataset.label
            : `Mean ${fmt(item.parsed.y)} — rank ${item.dataIndex + 1} of ${states.length}` +
              (item.label in best ? " (best 5)" : item.label in worst ? " (worst 5)" : "")),
          footer: () => "Click to see this state's breakdown",
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
  chart.canvas.dataset.question = question;
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
        x: {beginAtZero: true, position: "top", title: {display: true, text: "Mean of Data_Value (%)"}},
        y: {ticks: {autoSkip: false, font: {size: 11}}},
      },
      plugins: {tooltip: {callbacks: {label: (item) => `${item.dataset.label}: ${fmt(item.parsed.x)}`}}},
    },
  });
  chart.canvas.dataset.state = state;
}

// Outline the chosen state's bar in the ranking.
function markState(state) {
  const chart = Chart.getChart("ranking");
  if (!chart) return;
  const bars = chart.data.datasets[0];
  bars.borderColor = "#111";
  bars.borderWidth = chart.data.labels.map((s) => (s === state ? 3 : 0));
  chart.update();
}

// "Mean 42.67, rank 52 of 55 (lowest first). " from the ranking chart, if it shows the state.
function rankOf(state) {
  const ranking = Chart.getChart("ranking");
  const i = ranking ? ranking.data.labels.indexOf(state) : -1;
  if (i < 0) return "";
  const mean = ranking.data.datasets[0].data[i];
  return `Mean ${fmt(mean)}, rank ${i + 1} of ${ranking.data.labels.length} (lowest first). `;
}

// diff = global mean − state mean (docs/api.md, "The nine statistics"): a negative diff is a state above the mean.
function describeDiff(state, diff) {
  if (diff === null || diff === undefined) return `${state} has no data for this question.`;
  const side = diff < 0 ? "above" : diff > 0 ? "below" : "exactly at";
  const gap = diff === 0 ? "" : `${fmt(Math.abs(diff))} points `;
  return `Difference from the mean (global − state): ${fmt(diff)}. ` +
         `${state} is ${gap}${side} the mean over all rows of this question.`;
}

async function pickQuestion(question) {
  view.question = question;
  view.state = "";
  $("detail-section").hidden = true;
  if (!question) return;
  const direction = view.directions[question];
  const jobs = {means: ["states_mean", {question}]};
  if (direction) {  // best5/worst5 answer 400 for a question with no direction
    jobs.best = ["best5", {question}];
    jobs.worst = ["worst5", {question}];
  }
  if (!view.states.includes(NATIONAL)) jobs.global = ["global_mean", {question}];
  try {
    const r = await runJobs("Ranking all states", jobs);
    if (r === null || question !== view.question) return;
    const nationalMean = NATIONAL in r.means ? r.means[NATIONAL]
                         : r.global ? r.global.global_mean : null;
    $("ranking-section").hidden = false;  // before drawing, so the chart gets its size
    drawRanking(question, r.means, r.best || {}, r.worst || {}, nationalMean);
    $("ranking-note").textContent = direction
      ? `${direction === "lower" ? "Lower" : "Higher"} is better: the best 5 are green, ` +
        `the worst 5 red. ${Object.keys(r.means).length} states, lowest mean first.`
      : `This question has no better or worse direction, so no best or worst 5 are marked. ` +
        `${Object.keys(r.means).length} states, lowest mean first.`;
    fillStates(Object.keys(r.means).sort());
  } catch (err) {
    if (question === view.question) showError(err.message);
  }
}

function fillStates(states) {
  const select = $("state");
  select.replaceChildren(new Option("— choose a state —", ""),
                         ...states.map((s) => new Option(s, s)));
}

async function pickState(state) {
  const question = view.question;
  view.state = state;
  $("state").value = state;
  markState(state);
  if (!state) return;
  const jobs = {
    breakdown: ["state_mean_by_category", {question, state}],
    diff: ["state_diff_from_mean", {question, state}],
  };
  // The national breakdown is drawn beside the state's for comparison.
  if (state !== NATIONAL && view.states.includes(NATIONAL)) {
    jobs.national = ["state_mean_by_category", {question, state: NATIONAL}];
  }
  try {
    const r = await runJobs(`Breakdown of ${state}`, jobs);
    if (r === null || question !== view.question || state !== view.state) return;
    $("detail-heading").textContent = `${state}: mean by stratification`;
    $("diff").textContent = `${rankOf(state)}${describeDiff(state, r.diff[state])}`;
    $("detail-section").hidden = false;  // before drawing, so the chart gets its size
    drawBreakdown(state, r.breakdown[state], r.national ? r.national[NATIONAL] : null);
  } catch (err) {
    if (question === view.question && state === view.state) showError(err.message);
  }
}

// Chart.js did not load: ask its URL why (server/dashboard.py answers a JSON reason).
async function chartLibraryProblem() {
  const response = await fetch("/static/chart.umd.min.js").catch(() => null);
  const payload = response && await response.json().catch(() => null);
  return `Charts cannot be drawn: ${payload?.reason || "the chart library did not load."}`;
}

async function start() {
  try {
    const [info, questions] = await Promise.all([api("/api/info"), api("/api/questions")]);
    if (typeof Chart === "undefined") {
      showError(await chartLibraryProblem());
      setStatus("");
      return;
    }
    view.states = info.states || [];
    $("synthetic").hidden = !info.synthetic;
    const file = String(info.file).split(/[\\/]/).pop();  // the name, not the server's path
    $("source").textContent = `${file}: ${info.rows_loaded} rows used, ` +
      `${info.rows_ignored} without a value, ${view.states.length} states, ` +
      `${info.workers} worker processes`;
    const select = $("question");
    select.replaceChildren(new Option("— choose a question —", ""));
    for (const {text, direction} of questions.questions) {
      view.directions[text] = direction;
      const hint = direction ? ` (${direction} is better)` : "";
      select.add(new Option(text + hint, text));
    }
    select.disabled = false;
    select.addEventListener("change", () => pickQuestion(select.value));
    $("state").addEventListener("change", (e) => pickState(e.target.value));
    setStatus("Pick a question to rank the states.");
  } catch (err) {
    setStatus("");
    showError(err.message);
  }
}

start();
