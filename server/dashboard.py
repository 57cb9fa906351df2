"""The browser dashboard: GET `/` and a fixed set of static files under `/static/`.

Every file is read into memory once, when `add_dashboard_routes` runs, and looked
up by its exact name in a dict, so no request value ever becomes part of a file path
(SPEC §5); any other name answers a JSON 404.

The libraries (Chart.js, topojson-client, and us-atlas's states already projected to
Albers USA; pinned in web/package.json) are installed by `make web` (`npm ci`) and
served from here, never from a CDN, so the page works with no internet. If
web/node_modules is missing the server still starts and serves the page, but logs a
warning telling the operator to run `make web`, and each library answers a JSON 503;
the page then shows that reason. Failing soft keeps the JSON API (the compatible
part) usable without Node.

Every answer carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from server import logsetup
from server.errors import error

log = logsetup.get("dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
NODE_MODULES = Path(__file__).resolve().parents[1] / "web" / "node_modules"
CHART_NAME = "chart.umd.min.js"
CHART_LIBRARY = NODE_MODULES / "chart.js" / "dist" / CHART_NAME
TOPOJSON_NAME = "topojson-client.min.js"
TOPOJSON_LIBRARY = NODE_MODULES / "topojson-client" / "dist" / TOPOJSON_NAME
ATLAS_NAME = "states-albers-10m.json"  # the 50 states and DC, drawn in a 975×610 box
ATLAS = NODE_MODULES / "us-atlas" / ATLAS_NAME
PAGE_FILES = ("index.html", "dashboard.js", "dashboard.css", "map.js")

CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".json": "application/json"}
# This origin only, nothing inline, nothing may frame the page; img-src allows
# data: for the page's empty favicon (`href="data:,"`), which spares a 404.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

# name -> (body, content type), or None for the chart library when it is missing.
FILES = web.AppKey("dashboard_files", dict)
MISSING_LIBRARY = ("the chart and map libraries are not installed on the server; the "
                   "operator must run `make web` (npm ci in web/) and restart it")


def _read(path: Path) -> tuple[bytes, str]:
    return path.read_bytes(), CONTENT_TYPES[path.suffix]


def _serve(files: dict, name: str) -> web.Response:
    """A fresh response per request (aiohttp responses cannot be sent twice)."""
    if name not in files:
        response = error(404, "no such dashboard file")
    elif files[name] is None:
        response = error(503, MISSING_LIBRARY)
    else:
        body, content_type = files[name]
        response = web.Response(body=body, content_type=content_type, charset="utf-8")
    response.headers.update(HEADERS)
    return response


async def _index(request: web.Request) -> web.Response:
    return _serve(request.app[FILES], "index.html")


async def _static(request: web.Request) -> web.Response:
    return _serve(request.app[FILES], request.match_info["name"])


def add_dashboard_routes(app: web.Application) -> None:
    """Register `/` and `/static/{name}` on `app`, reading the files now.

    The page files ship with the code, so a missing one is a broken checkout and
    raises here; only the npm-installed libraries may be absent.
    """
    files = {name: _read(STATIC_DIR / name) for name in PAGE_FILES}
    # Looked up now, not at import, so that tests can point them elsewhere.
    for name, path in ((CHART_NAME, CHART_LIBRARY), (TOPOJSON_NAME, TOPOJSON_LIBRARY),
                       (ATLAS_NAME, ATLAS)):
        try:
            files[name] = _read(path)
        except FileNotFoundError:
            log.warning("dashboard: %s is missing; run `make web` to install the chart "
                        "and map libraries (the page is served but can draw no chart)",
                        path)
            files[name] = None
    app[FILES] = files
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
