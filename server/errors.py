"""Every answer is JSON (docs/api.md, "Errors"): HTTP errors keep their status with a JSON body,
anything unexpected is logged with its traceback and answers a plain 500.

Three layers, because a request can fail at three depths:
- `json_errors` (middleware): whatever a handler raises;
- `read_body` (middleware): the body of a POST, read once with a deadline, so a
  client that stalls mid-body or sends a broken chunked body gets a JSON 408/400
  instead of holding a handler forever (the handlers then get the cached bytes);
- `JsonAppRunner`: requests aiohttp's own parser rejects before any handler runs
  (bad request line, bad header, invalid chunk size...), which aiohttp would answer
  as text/plain and log as an ERROR with a traceback — one line per garbage request.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from server import logsetup

log = logsetup.get("errors")

REASONS = {
    404: "no such route",
    405: "method not allowed on this route",
    413: "the request body is too large",
}
PROTOCOL_REASONS = {400: "the request is not valid HTTP", 413: REASONS[413]}
BODY_DEADLINE = web.AppKey("body_deadline", float)


def error(status: int, reason: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"status": "error", "reason": reason}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k in ("Allow", "Retry-After", "WWW-Authenticate")
        }
        return error(exc.status, REASONS.get(exc.status, exc.reason.lower()), headers)
    except Exception:
        log.exception("unexpected failure on %s %s", request.method, request.path)
        return error(500, "internal error; it has been logged")


@web.middleware
async def read_body(request: web.Request, handler):
    if request.body_exists:
        deadline = request.app.get(BODY_DEADLINE, 0.0)
        try:
            async with asyncio.timeout(deadline or None):
                await request.read()  # cached: the handler's read() returns it
        except TimeoutError:
            log.warning(
                "%s %s from %s: the body did not arrive within %g s",
                request.method,
                request.path,
                request.remote,
                deadline,
            )
            return _closing(error(408, f"the request body did not arrive within {deadline:g} s"))
        except RequestPayloadError as exc:
            log.warning(
                "%s %s from %s: malformed body (%s)",
                request.method,
                request.path,
                request.remote,
                _first_line(exc),
            )
            return _closing(
                error(
                    400,
                    "the request body is malformed (bad chunked or content encoding, or cut short)",
                )
            )
        except ConnectionError:
            log.info(
                "%s %s from %s: the client went away before sending its body",
                request.method,
                request.path,
                request.remote,
            )
            return _closing(error(400, "the connection was closed mid-body"))
    return await handler(request)


async def expect_continue(refusal, request: web.Request) -> web.Response | None:
    """`Expect: 100-continue`: answer now instead of inviting a body we would refuse.

    aiohttp's default sends `100 Continue` to any such request, so a client announcing
    a 10 GB body was invited to send it before the 413. Here a body over the limit
    gets its 413, and `refusal(request)` (the route's checks that need no body) its
    answer, without a 100 Continue; the connection is closed so no body is read.
    Runs before the middlewares, hence the JSON answers here.
    """
    if request.headers.get("Expect", "").strip().lower() != "100-continue":
        return _closing(error(417, "the only expectation understood is 100-continue"))
    if request.content_length is not None and request.content_length > request.client_max_size:
        return _closing(error(413, REASONS[413]))
    refused = refusal(request)
    if refused is not None:
        return _closing(refused)
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not begun
    return None


def _closing(response: web.Response) -> web.Response:
    response.force_close()  # the rest of the body is not worth waiting for
    return response


def _first_line(exc: BaseException) -> str:
    """The gist of an error in one line (aiohttp's parser messages span several)."""
    text = str(getattr(exc, "message", "") or exc)
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not re.fullmatch(r"\d{3}, message:?", line.strip())
    ]
    return lines[0].rstrip(":") if lines else type(exc).__name__


class JsonRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering protocol errors in JSON."""

    def handle_error(
        self,
        request,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error(
                "error handling %s %s from %s",
                request.method,
                request.path,
                request.remote,
                exc_info=exc,
            )
        else:  # a client sent something that is not HTTP: its fault, one line
            log.warning(
                "malformed HTTP request from %s answered %d: %s",
                request.remote,
                status,
                _first_line(exc or Exception(message)),
            )
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; cannot send an error")
        if status >= 500:
            reason = "internal error; it has been logged"
        else:
            reason = PROTOCOL_REASONS.get(status, "the request cannot be served")
        response = error(status, reason)
        response.force_close()
        return response

    def log_exception(self, message, *args, exc_info=None, **kw) -> None:
        if isinstance(exc_info, RequestPayloadError):
            # aiohttp reads the rest of a body after the answer ("lingering") and
            # meets the client's broken encoding again: already answered, one line.
            log.info("%s: %s", message, _first_line(exc_info))
            return
        super().log_exception(message, *args, exc_info=exc_info, **kw)


class _JsonServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonAppRunner(web.AppRunner):
    """AppRunner whose connections are JsonRequestHandlers (aiohttp has no public
    hook for the parser's errors; this one is covered by tests/api/test_hostile.py)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonServer
        return server
