"""The dashboard in a real headless Chromium against the real server process.

Debian's chromium (`make system-packages`) is driven by Playwright with its executable
path set, so no browser is downloaded. A missing browser or Playwright FAILS the
test: a skipped browser test would let a broken page land. The chart and map
libraries are installed here with `npm ci` when web/node_modules lacks them.

The server runs as an operator starts it (`python -m server serve …`, through
tests/support/live.py) on a free loopback port over synthetic demo data made in the
test's temp dir, and is stopped with SIGTERM at the end. Every wait is bounded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from server import dashboard
from tests.browser.conftest import BROWSER_MS
from tests.support.live import ROOT, start_server

LIBRARIES = tuple(dashboard.library_paths().values())
SCREENSHOT = ROOT / "docs" / "dashboard.png"
START_SECONDS = 60
STOP_SECONDS = 30


@pytest.fixture(scope="module")
def chart_library() -> None:
    if all(library.exists() for library in LIBRARIES):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"{LIBRARIES} are missing and npm is not installed: run `make web`")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT / "web", check=True, timeout=300
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory, chart_library):
    """A real server (tests/support/live.py) over the full-size demo data."""
    tmp = tmp_path_factory.mktemp("server")
    data = tmp / "demo.csv"
    subprocess.run(
        [sys.executable, "-m", "server", "data", "demo", str(data)],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    live = start_server(tmp, data=data, ready_timeout=START_SECONDS)
    try:
        try:
            urllib.request.urlopen(f"{live.url}/", timeout=5).close()
        except urllib.error.HTTPError:
            pytest.fail(
                "the server does not serve the dashboard at /: server/app.py "
                "must call add_dashboard_routes(app)"
            )
        yield live
    finally:
        assert live.stop(timeout=STOP_SECONDS) == 0, live.text()


@pytest.fixture
def page(browser, server):
    """A fresh page, plus the console errors and page errors it reports (a CSP
    violation shows up there). Reduced motion makes the dashboard skip animations,
    so bars stand still where the test clicks."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    context.set_default_timeout(BROWSER_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
    tab.on("pageerror", lambda e: problems.append(str(e)))
    # The page must work with no internet: it may ask its own server only.
    tab.on(
        "request",
        lambda r: (
            r.url.startswith((f"{server.url}/", "data:"))
            or problems.append(f"request to another origin: {r.url}")
        ),
    )
    yield tab, problems
    context.close()


def _questions(server) -> list[dict]:
    return server.get("/api/questions")[1]["questions"]


def _open(tab, base: str, query: str = "") -> None:
    tab.goto(f"{base}/{query}")
    # Functions, not expressions: the page's CSP forbids eval, which string
    # expressions in wait_for_function would need.
    tab.wait_for_function("() => !document.getElementById('question').disabled")


def test_rank_states_then_break_one_down(page, server):
    tab, problems = page
    info = server.get("/api/info")[1]
    question = next(q["text"] for q in _questions(server) if q["direction"])
    _open(tab, server.url)
    assert tab.locator("#synthetic").is_visible() == info["synthetic"] is True

    tab.select_option("#question", question)
    tab.wait_for_function(
        "q => Chart.getChart('ranking')?.canvas.dataset.question === q", arg=question
    )
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
    tab.locator("#ranking").scroll_into_view_if_needed()  # it is below the map
    x, y = tab.evaluate(
        """s => {
        const chart = Chart.getChart('ranking');
        const bar = chart.getDatasetMeta(0).data[chart.data.labels.indexOf(s)];
        const box = chart.canvas.getBoundingClientRect();
        return [box.left + bar.x, box.top + (bar.y + bar.base) / 2];
    }""",
        state,
    )
    tab.mouse.click(x, y)
    tab.wait_for_function("s => Chart.getChart('breakdown')?.canvas.dataset.state === s", arg=state)
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
    assert "Difference from National" in tab.inner_text("#diff")
    assert tab.input_value("#state") == state
    assert tab.locator("#error").is_hidden()

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
        "() => document.getElementById('status-text').textContent.includes('0 of 2 jobs')"
    )
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
    tab.route(
        "**/api/states_mean",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"status": "error", "reason": "shutting down"}',
        ),
    )
    _open(tab, server.url)
    tab.select_option("#question", _questions(server)[0]["text"])
    error = tab.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == "The server answered 503: shutting down"
    assert tab.locator("#ranking-section").is_hidden()


def test_a_missing_chart_library_is_explained(page, server):
    tab, _ = page
    reason = "the chart library is not installed on the server; run `make web`"
    tab.route(
        "**/static/chart.umd.min.js",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body=json.dumps({"status": "error", "reason": reason}),
        ),
    )
    tab.goto(f"{server.url}/")
    error = tab.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == f"Charts cannot be drawn: {reason}"


# ---- the analytics view (docs/dashboard.md) -----------------------------------------

OBESITY = "Percent of adults aged 18 years and older who have obesity"
ATLAS_STATES = 51  # us-atlas: the 50 states and the District of Columbia
NOT_ON_THE_MAP = {"National", "Guam", "Puerto Rico", "Virgin Islands"}


def _answer(server, endpoint: str, **fields):
    result = server.ask(endpoint, **fields)
    assert result["status"] == "done", result
    return result["data"]


def _map(tab) -> dict:
    """What the map shows: every shape's state, value and colour, the legend's
    colours in order, and the locations listed beside the map."""
    return tab.evaluate("""() => ({
        shapes: [...document.querySelectorAll('#map path')].map((p) => ({
            state: p.dataset.state, value: p.dataset.value, fill: p.getAttribute('fill')})),
        legend: [...document.querySelectorAll('#legend .swatch')].map((s) => s.dataset.color),
        others: [...document.querySelectorAll('#other-list li')].map((li) => ({
            state: li.dataset.state, value: li.dataset.value})),
        heading: document.getElementById('map-heading').textContent,
    })""")


def _wait_map(tab, heading_part: str) -> dict:
    tab.wait_for_function(
        "h => document.querySelectorAll('#map path').length > 0 && "
        "document.getElementById('map-heading').textContent.includes(h) && "
        "!document.getElementById('status-text').textContent.includes('jobs finished')",
        arg=heading_part,
    )
    return _map(tab)


def _shown_values(shown: dict) -> dict:
    values = {s["state"]: s["value"] for s in shown["shapes"] + shown["others"]}
    return {state: (float(v) if v else None) for state, v in values.items()}


def _expected_values(answer: dict, estimate: bool) -> dict:
    if estimate:
        return {s: (e["estimate"] if e else None) for s, e in answer.items()}
    return dict(answer)


def test_the_map_has_one_shape_per_state_coloured_in_legend_order(page, server):
    tab, problems = page
    _open(tab, server.url)
    shown = _wait_map(tab, "mean of all rows")
    assert tab.input_value("#question") == OBESITY  # preselected on first load
    shapes = shown["shapes"]
    assert len(shapes) == len({s["state"] for s in shapes}) == ATLAS_STATES
    means = _answer(server, "states_mean", question=OBESITY)
    assert {s["state"] for s in shapes} <= set(means)
    # the locations the map cannot draw are listed beside it, in the answer's order
    others = [s for s in means if s not in {x["state"] for x in shapes}]
    assert [o["state"] for o in shown["others"]] == others
    assert NOT_ON_THE_MAP <= set(others)
    assert _shown_values(shown) == means
    # values ascending <-> colours in the legend's order (the last swatch: no data)
    legend = shown["legend"][:-1]
    assert len(legend) == 5 and len(set(legend)) == 5
    ranked = sorted(shapes, key=lambda s: float(s["value"]))
    classes = [legend.index(s["fill"]) for s in ranked]
    assert classes == sorted(classes) and classes[0] == 0 and classes[-1] == 4
    assert problems == []


def test_the_year_control_changes_what_is_shown(page, server):
    tab, problems = page
    _open(tab, server.url)
    whole = _shown_values(_wait_map(tab, "2011–2022"))
    tab.select_option("#year-start", "2016")
    tab.select_option("#year-end", "2018")
    part = _shown_values(_wait_map(tab, "2016–2018"))
    assert part != whole
    assert part == _answer(server, "states_mean", question=OBESITY, year_start=2016, year_end=2018)
    assert "from=2016" in tab.url and "to=2018" in tab.url
    # the estimate, over the same years
    tab.select_option("#measure", "estimate")
    estimates = _shown_values(_wait_map(tab, "estimate"))
    assert estimates == _expected_values(
        _answer(server, "states_estimate", question=OBESITY, year_start=2016, year_end=2018), True
    )
    assert problems == []


def _download(tab, button: str) -> list[list]:
    """The CSV the button saves: the header, then rows of a name and numbers (None
    for an empty cell); a number must be exactly the API's (JavaScript writes 40.0
    as "40", so the cells are compared as numbers, not as text)."""
    with tab.expect_download() as caught:
        tab.click(button)
    rows = list(csv.reader(io.StringIO(Path(caught.value.path()).read_text())))
    return [rows[0], *([row[0], *(float(c) if c else None for c in row[1:])] for row in rows[1:])]


def test_the_export_is_the_apis_answer(page, server):
    tab, problems = page
    _open(tab, server.url, "?from=2013&to=2019&state=Ohio&measure=estimate")
    _wait_map(tab, "2013–2019")
    tab.wait_for_function("() => Chart.getChart('trend')?.canvas.dataset.state === 'Ohio'")
    rows = _download(tab, "#export-map")
    answer = _answer(server, "states_estimate", question=OBESITY, year_start=2013, year_end=2019)
    keys = ["estimate", "ci_low", "ci_high", "rows", "sample_size"]
    assert rows[0] == ["location", *keys]
    assert [row[0] for row in rows[1:]] == list(answer)  # the API's order
    for row in rows[1:]:
        estimate = answer[row[0]]
        assert row[1:] == ([None] * 5 if estimate is None else [estimate[k] for k in keys]), row
    assert any(answer.values()) and None in answer.values()  # both kinds were checked

    tab.select_option("#measure", "mean")
    _wait_map(tab, "mean of all rows")
    rows = _download(tab, "#export-map")
    means = _answer(server, "states_mean", question=OBESITY, year_start=2013, year_end=2019)
    assert rows[1:] == [[state, mean] for state, mean in means.items()]

    rows = _download(tab, "#export-trend")
    trend = _answer(
        server, "state_trend", question=OBESITY, state="Ohio", year_start=2013, year_end=2019
    )["Ohio"]
    assert rows[0] == ["year", "mean", "estimate", "ci_low", "ci_high"]
    assert {row[0]: row[1] for row in rows[1:] if row[1] is not None} == trend
    for row in rows[1:]:
        year = int(row[0])
        single = _answer(
            server, "state_estimate", question=OBESITY, state="Ohio", year_start=year, year_end=year
        )["Ohio"]
        assert row[2:] == (
            [None] * 3 if single is None else [single[k] for k in ("estimate", "ci_low", "ci_high")]
        )
    assert problems == []


def test_a_shared_url_restores_the_view(page, server, tmp_path):
    tab, problems = page
    question = next(q["text"] for q in _questions(server) if q["direction"] == "higher")
    years = {"year_start": 2014, "year_end": 2020}
    estimates = _answer(server, "states_estimate", question=question, **years)
    # The state with the most Total rows in these years: its trend has a band.
    state = max(
        (s for s, e in estimates.items() if e and s not in NOT_ON_THE_MAP),
        key=lambda s: (estimates[s]["rows"], s),
    )
    _open(
        tab,
        server.url,
        "?"
        + urllib.parse.urlencode(
            {"question": question, "state": state, "from": 2014, "to": 2020, "measure": "estimate"}
        ),
    )
    shown = _wait_map(tab, "estimate")
    tab.wait_for_function("s => Chart.getChart('trend')?.canvas.dataset.state === s", arg=state)
    assert [
        tab.input_value(f"#{name}")
        for name in ("question", "state", "year-start", "year-end", "measure")
    ] == [question, state, "2014", "2020", "estimate"]
    assert "2014–2020" in shown["heading"]
    assert _shown_values(shown) == _expected_values(estimates, True)
    assert tab.inner_text("#detail-heading") == f"{state}, 2014–2020"
    estimate = _answer(server, "state_estimate", question=question, state=state, **years)[state]
    mean = _answer(server, "state_mean", question=question, state=state, **years)[state]
    figures = tab.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#estimate dd')].map((d) => [d.id, d.dataset.value]))""")
    # the panel shows the states_estimate / states_mean answers: equal to the one
    # state's answers to 1e-9 (the sums run in another order)
    assert float(figures["figure-estimate"]) == pytest.approx(estimate["estimate"], abs=1e-9)
    assert float(figures["figure-mean"]) == pytest.approx(mean, abs=1e-9)
    labels = tab.evaluate("() => Chart.getChart('trend').data.labels")
    assert labels and all(2014 <= int(year) <= 2020 for year in labels)
    selected = tab.evaluate("() => document.querySelector('#map path.selected').dataset.state")
    assert selected == state

    tab.mouse.move(0, 0)  # no tooltip in the picture
    tab.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    if os.environ.get("LESTATS_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", SCREENSHOT)
    assert problems == []


def test_usable_on_a_420_pixel_phone(browser, server):
    context = browser.new_context(
        viewport={"width": 420, "height": 800}, reduced_motion="reduce", is_mobile=True
    )
    context.set_default_timeout(BROWSER_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
    tab.on("pageerror", lambda e: problems.append(str(e)))
    try:
        _open(tab, server.url, "?state=Ohio")
        _wait_map(tab, "mean of all rows")
        tab.wait_for_function("() => Chart.getChart('trend')?.canvas.dataset.state === 'Ohio'")
        layout = tab.evaluate("""() => ({
            scroll: document.documentElement.scrollWidth,
            map: document.getElementById('map').getBoundingClientRect().width,
            bars: Chart.getChart('ranking').options.indexAxis})""")
        assert layout["scroll"] <= 420  # nothing wider than the screen
        assert 300 <= layout["map"] <= 420
        assert layout["bars"] == "y"  # the ranking's bars lie down on a phone
        assert problems == []
    finally:
        context.close()
