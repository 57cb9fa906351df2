"""Every answer is JSON (SPEC §4): HTTP errors keep their status with a JSON body,
anything unexpected is logged with its traceback and answers a plain 500."""
from __future__ import annotations

from aiohttp import web

from server import logsetup

log = logsetup.get("errors")

REASONS = {
    404: "no such route",
    405: "method not allowed on this route",
    413: "the request body is too large",
}


def error(status: int, reason: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"status": "error", "reason": reason}, status=status,
                             headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k in ("Allow", "Retry-After", "WWW-Authenticate")}
        return error(exc.status, REASONS.get(exc.status, exc.reason.lower()), headers)
    except Exception:
        log.exception("unexpected failure on %s %s", request.method, request.path)
        return error(500, "internal error; it has been logged")
