"""The dashboard in a real headless Chromium against the real server process.

Debian's chromium (`make system-packages`) is driven by Playwright with its executable
path set, so no browser is downloaded. A missing browser or Playwright FAILS the
test: a skipped browser test would let a broken page land. The chart library is
installed here with `npm ci` when web/node_modules lacks it.

The server runs as an operator starts it (`python -m server serve …`, through
tests/support/live.py) on a free loopback port over synthetic demo data made in the
test's temp dir, and is stopped with SIGTERM at the end. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.live import ROOT, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LIBRARY = ROOT / "web" / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
SCREENSHOT = ROOT / "docs" / "dashboard.png"
START_SECONDS = 60
STOP_SECONDS = 30
BROWSER_MS = 30_000


@pytest.fixture(scope="module")
def chart_library() -> None:
    if LIBRARY.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"{LIBRARY} is missing and npm is not installed: run `make web`")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT / "web",
                   check=True, timeout=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory, chart_library):
    """A real server (tests/support/live.py) over the full-size demo data."""
    tmp = tmp_path_factory.mktemp("server")
    data = tmp / "demo.csv"
    subprocess.run([sys.executable, "-m", "server", "data", "demo", str(data)],
                   cwd=ROOT, check=True, timeout=120, capture_output=True)
    live = start_server(tmp, data=data, ready_timeout=START_SECONDS)
    try:
        try:
            urllib.request.urlopen(f"{live.url}/", timeout=5).close()
        except urllib.error.HTTPError:
            pytest.fail("the server does not serve the dashboard at /: server/app.py "
                        "must call add_dashboard_routes(app)")
        yield live
    finally:
        assert live.stop(timeout=STOP_SECONDS) == 0, live.text()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-packages` (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make test` "
                    "(pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=BROWSER_MS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page, plus the console errors and page errors it reports (a CSP
    violation shows up there). Reduced motion makes the dashboard skip animations,
    so bars stand still where the test clicks."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  reduced_motion="reduce")
    context.set_default_timeout(BROWSER_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
    tab.on("pageerror", lambda e: problems.append(str(e)))
    # The page must work with no internet: it may ask its own server only.
    tab.on("request", lambda r: r.url.startswith((f"{server.url}/", "data:"))
           or problems.append(f"request to another origin: {r.url}"))
    yield tab, problems
    context.close()


def _questions(server) -> list[dict]:
    return server.get("/api/questions")[1]["questions"]


def _open(tab, base: str) -> None:
    tab.goto(f"{base}/")
    # Functions, not expressions: the page's CSP forbids eval, which string
    # expressions in wait_for_function would need.
    tab.wait_for_function("() => !document.getElementById('question').disabled")


def test_rank_states_then_break_one_down(page, server, tmp_path):
    tab, problems = page
    info = server.get("/api/info")[1]
    question = next(q["text"] for q in _questions(server) if q["direction"])
    _open(tab, server.url)
    assert tab.locator("#synthetic").is_visible() == info["synthetic"] is True

    tab.select_option("#question", question)
    tab.wait_for_function("q => Chart.getChart('ranking')?.canvas.dataset.question === q",
                          arg=question)
    ranking = tab.evaluate("""() => {
        const chart = Chart.getChart('ranking');
        const bars = chart.getDatasetMeta(0);
        const line = chart.data.datasets.find((d) => d.type === 'line');
        return {
          type: bars.type, labels: chart.data.labels, values: chart.data.datasets[0].data,
          colors: chart.data.datasets[0].backgroundColor, line: line && line.data,
          drawn: bars.data.filter((b) => Number.isFinite(b.x) && b.base - b.y > 0).length,
        };
    }""")
    states = len(info["states"])
    assert ranking["type"] == "bar"
    assert ranking["drawn"] == len(ranking["labels"]) == states == 55
    assert ranking["values"] == sorted(ranking["values"])  # ranked, lowest first
    colors = ranking["colors"]
    first, last = colors[0], colors[-1]  # best and worst colour, either way round
    assert first != last and colors.count(first) == 5 and colors.count(last) == 5
    national = ranking["values"][ranking["labels"].index("National")]
    assert ranking["line"] == [national] * states

    state = "Alabama"
    x, y = tab.evaluate("""s => {
        const chart = Chart.getChart('ranking');
        const bar = chart.getDatasetMeta(0).data[chart.data.labels.indexOf(s)];
        const box = chart.canvas.getBoundingClientRect();
        return [box.left + bar.x, box.top + (bar.y + bar.base) / 2];
    }""", state)
    tab.mouse.click(x, y)
    tab.wait_for_function("s => Chart.getChart('breakdown')?.canvas.dataset.state === s",
                          arg=state)
    breakdown = tab.evaluate("""() => {
        const chart = Chart.getChart('breakdown');
        return {labels: chart.data.labels, series: chart.data.datasets.map((d) => d.label),
                drawn: chart.getDatasetMeta(0).data.length,
                values: chart.data.datasets[0].data};
    }""")
    assert tab.locator("#detail-section").is_visible()
    assert breakdown["series"] == [state, "National"]
    assert breakdown["drawn"] == len(breakdown["labels"]) > 1
    assert "Total" in breakdown["labels"]  # the ('Total', 'Total') key, parsed
    assert not any("(" + "'" in label for label in breakdown["labels"])
    assert all(isinstance(v, (int, float)) for v in breakdown["values"])
    assert "Difference from the mean" in tab.inner_text("#diff")
    assert tab.input_value("#state") == state
    assert tab.locator("#error").is_hidden()

    tab.mouse.move(0, 0)  # no tooltip in the picture
    tab.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    if os.environ.get("LESTATS_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)
    assert problems == []


def test_progress_is_shown_while_jobs_run(page, server):
    tab, problems = page
    held, release = [], []  # polls are held until the test has seen the progress

    def hold(route):
        if release:
            route.continue_()
        else:
            held.append(route)
    tab.route("**/api/get_results/**", hold)
    _open(tab, server.url)
    question = next(q["text"] for q in _questions(server) if q["direction"])
    tab.select_option("#question", question)
    tab.wait_for_function(
        "() => document.getElementById('status-text').textContent.includes('0 of 3 jobs')")
    assert tab.locator("#progress").is_visible()
    release.append(True)
    for route in held:
        route.continue_()
    tab.wait_for_function("() => Chart.getChart('ranking') !== undefined")
    assert "done" in tab.inner_text("#status-text")
    assert tab.locator("#progress").is_hidden()
    assert problems == []


def test_a_failed_request_is_shown_readably(page, server):
    tab, _ = page
    tab.route("**/api/states_mean", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"status": "error", "reason": "shutting down"}'))
    _open(tab, server.url)
    tab.select_option("#question", _questions(server)[0]["text"])
    error = tab.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == "The server answered 503: shutting down"
    assert tab.locator("#ranking-section").is_hidden()


def test_a_missing_chart_library_is_explained(page, server):
    tab, _ = page
    reason = "the chart library is not installed on the server; run `make web`"
    tab.route("**/static/chart.umd.min.js", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"status": "error", "reason": reason})))
    tab.goto(f"{server.url}/")
    error = tab.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == f"Charts cannot be drawn: {reason}"
