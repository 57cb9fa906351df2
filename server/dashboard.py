"""The browser dashboard: GET `/` and a fixed set of static files under `/static/`.

Every file is read into memory once, when `add_dashboard_routes` runs, and looked
up by its exact name in a dict, so no request value ever becomes part of a file path
(docs/api.md, "Security"); any other name answers a JSON 404.

The browser libraries (server.paths.VENDORED: Chart.js, topojson-client, and us-atlas's states
already projected to Albers USA; pinned in web/package.json)
are served from here, never from a CDN, so the page works with no internet. A wheel
carries them as package data (copied from web/node_modules when it is built); a
checkout reads them from web/node_modules, installed by `make web` (`npm ci`). If
one is missing the server still starts and serves the page, but logs a warning
telling the operator to run `make web`, and that file answers a JSON 503; the page
then shows that reason. Failing soft keeps the JSON API usable without Node.

Every answer carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from server import logsetup, paths
from server.errors import error

log = logsetup.get("dashboard")

STATIC_DIR = paths.STATIC
PAGE_FILES = ("index.html", "dashboard.js", "dashboard.css", "map.js")

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
}
# This origin only, nothing inline, nothing may frame the page; img-src allows
# data: for the page's empty favicon (`href="data:,"`), which spares a 404.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# name -> (body, content type), or None for a vendored library that is missing.
FILES = web.AppKey("dashboard_files", dict)
MISSING_LIBRARY = (
    "the chart and map libraries are not installed on the server; the "
    "operator must run `make web` (npm ci in web/) and restart it"
)


def library_paths() -> dict[str, Path]:
    """Where each vendored library is read from (tests point this elsewhere)."""
    return {name: paths.vendored(name) for name in paths.VENDORED}


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
    files: dict[str, tuple[bytes, str] | None] = {
        name: _read(STATIC_DIR / name) for name in PAGE_FILES
    }
    for name, path in library_paths().items():
        try:
            files[name] = _read(path)
        except FileNotFoundError:
            log.warning(
                "dashboard: %s is missing; run `make web` to install the chart "
                "and map libraries (the page is served but can draw no chart)",
                path,
            )
            files[name] = None
    app[FILES] = files
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
