"""Refusing what a browser sends on behalf of another site (cross-site request forgery).

Any page the operator opens can make the browser send requests to a loopback server:
`<img src=".../api/graceful_shutdown">` (a GET), a form or a `fetch` with a
`text/plain` body (a POST with no CORS preflight). The server cannot read cookies or
tokens from such requests (it uses none), but browsers say where a request comes from:

- `Sec-Fetch-Site` (Fetch Metadata, every current browser): `same-origin` for the
  dashboard's own requests, `none` for an address the user typed; `same-site` (another
  port of the same host) and `cross-site` are another site's doing;
- `Origin` (on every POST and every CORS request): the page's origin, or `null`
  from a sandboxed or privacy-sensitive context.

The admin action and job submission are refused (403) when either says the request
comes from elsewhere. Clients that are not browsers send neither header and are not
affected. Reading answers cross-site was never possible: no CORS header is sent.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from server import logsetup
from server.errors import error

log = logsetup.get("cross_site")

# Sec-Fetch-Site values a browser gives a request the user or this origin made.
OWN_SITE = ("same-origin", "none")


def _authority(url: URL) -> tuple[str, int | None]:
    return (url.host or "").lower(), url.port


def _same_origin(origin: str, host: str) -> bool:
    """Whether `Origin` names this server, as the client addressed it (`Host`)."""
    try:
        claimed = URL(origin)
        if (
            claimed.scheme not in ("http", "https")
            or not claimed.host
            or claimed.path not in ("", "/")
        ):
            return False
        return _authority(claimed) == _authority(URL(f"{claimed.scheme}://{host}"))
    except (TypeError, ValueError):  # not a URL at all
        return False


def refusal(request: web.Request, action: str) -> web.Response | None:
    """A 403 when a browser marked the request as coming from another site."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if fetch_site is not None and fetch_site.strip().lower() not in OWN_SITE:
        because = f"Sec-Fetch-Site: {fetch_site}"
    elif origin is not None and not _same_origin(origin, request.headers.get("Host", "")):
        because = f"Origin: {origin}"
    else:
        return None
    log.warning(
        "refused cross-site %s %s from %s (%s)",
        request.method,
        request.path,
        request.remote,
        ascii(because),
    )
    return error(
        403,
        f"{action} is refused for cross-site requests: the browser marked "
        f"this request as sent by another site's page ({because[:100]}); "
        "use the dashboard served by this server, or a non-browser client",
    )
