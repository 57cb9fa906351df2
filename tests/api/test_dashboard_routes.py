"""The dashboard's routes on a bare aiohttp application: what is served, with which
headers, and that nothing outside the allow-list is (docs/api.md, "Security").

The chart library is replaced by a small stand-in file, so these tests need no npm;
tests/browser/ exercises the real one.
"""

from __future__ import annotations

import logging
import re

import pytest
from aiohttp import web
from yarl import URL

from server import dashboard, paths

FAKE_LIBRARY = b"/* stand-in for Chart.js */\n"


@pytest.fixture
def library(tmp_path, monkeypatch):
    path = tmp_path / "chart.umd.min.js"
    path.write_bytes(FAKE_LIBRARY)
    monkeypatch.setattr(dashboard, "library_paths", lambda: {path.name: path})
    return path


@pytest.fixture
def client(aiohttp_client, library):
    async def make():
        app = web.Application()
        dashboard.add_dashboard_routes(app)
        return await aiohttp_client(app)

    return make


def assert_hardened(response):
    csp = response.headers["Content-Security-Policy"]
    assert csp == dashboard.CSP
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe" not in csp  # no inline script or style, no eval
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_index_is_the_page(client):
    response = await (await client()).get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_hardened(response)
    page = await response.text()
    assert '<script src="/static/chart.umd.min.js"' in page
    assert '<script src="/static/dashboard.js"' in page
    assert '<script src="/static/topojson-client.min.js"' in page
    assert '<script src="/static/map.js"' in page
    # The CSP forbids inline code, so the page must hold none that would silently fail.
    assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    assert not re.search(r"\son[a-z]+=", page), "inline event handler"
    assert "style=" not in page


@pytest.mark.parametrize(
    "name, content_type",
    [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
        ("index.html", "text/html"),
        ("map.js", "text/javascript"),
    ],
)
async def test_page_files(client, name, content_type):
    response = await (await client()).get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == f"{content_type}; charset=utf-8"
    assert_hardened(response)
    assert await response.read() == (dashboard.STATIC_DIR / name).read_bytes()


async def test_chart_library_comes_from_node_modules(client):
    response = await (await client()).get("/static/chart.umd.min.js")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert_hardened(response)
    assert await response.read() == FAKE_LIBRARY


@pytest.mark.parametrize(
    "name, content_type",
    [("topojson-client.min.js", "text/javascript"), ("states-albers-10m.json", "application/json")],
)
async def test_map_libraries_come_from_node_modules_or_answer_503(
    aiohttp_client, tmp_path, monkeypatch, name, content_type
):
    """topojson-client and us-atlas's shapes, like the chart library: served from
    web/node_modules when installed, a JSON 503 naming `make web` when not."""
    assert name in paths.VENDORED
    (tmp_path / name).write_bytes(b"stand-in")
    monkeypatch.setattr(dashboard, "library_paths", lambda: {name: tmp_path / name})
    app = web.Application()
    dashboard.add_dashboard_routes(app)
    response = await (await aiohttp_client(app)).get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == f"{content_type}; charset=utf-8"
    assert_hardened(response)
    assert await response.read() == b"stand-in"

    absent = tmp_path / "absent" / name
    monkeypatch.setattr(dashboard, "library_paths", lambda: {name: absent})
    app = web.Application()
    dashboard.add_dashboard_routes(app)
    response = await (await aiohttp_client(app)).get(f"/static/{name}")
    assert response.status == 503 and "make web" in (await response.json())["reason"]


async def test_files_are_read_once_at_start(client, library):
    c = await client()
    library.write_bytes(b"changed on disk")
    assert await (await c.get("/static/chart.umd.min.js")).read() == FAKE_LIBRARY


async def test_missing_chart_library_answers_503_and_warns(
    aiohttp_client, tmp_path, monkeypatch, caplog
):
    absent = tmp_path / "absent" / "chart.umd.min.js"
    monkeypatch.setattr(dashboard, "library_paths", lambda: {absent.name: absent})
    app = web.Application()
    with caplog.at_level(logging.WARNING, logger="lestats.dashboard"):
        dashboard.add_dashboard_routes(app)
    assert any("make web" in r.getMessage() for r in caplog.records)
    c = await aiohttp_client(app)
    response = await c.get("/static/chart.umd.min.js")
    assert response.status == 503
    assert_hardened(response)
    body = await response.json()
    assert body["status"] == "error" and "make web" in body["reason"]
    assert (await c.get("/")).status == 200  # the page itself is still served


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.py",
        "/static/dashboard.py",
        "/static/chart.js",
        "/static/.env",
        "/static/DASHBOARD.JS",
        "/static/..%2Fserver%2Fapp.py",
        "/static/..%2F..%2Fserver%2Fdashboard.py",
        "/static/%2e%2e%2Fdashboard.py",
        "/static/..%5Cdashboard.py",
        "/static/%2Fetc%2Fpasswd",
        "/static/dashboard.js%00.py",
        "/static/..%252Fdashboard.py",
    ],
)
async def test_anything_else_is_a_json_404(client, path):
    response = await (await client()).get(URL(path, encoded=True))
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert_hardened(response)
    # Our handler's reason, so the request reached the allow-list and was refused there.
    assert await response.json() == {"status": "error", "reason": "no such dashboard file"}
