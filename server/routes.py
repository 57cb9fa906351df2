"""Every route of the service, visible in one screen (ROUTES at the bottom).

The statistics are one table (compute.endpoints.ENDPOINTS): each becomes a
`POST /api/<name>` served by the same `submit` handler.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import itertools
import os

from aiohttp import web

from compute.dataset import Dataset
from compute.endpoints import ENDPOINTS, Endpoint
from server import cross_site, logsetup, status, validation
from server.config import Settings
from server.errors import error, expect_continue
from server.jobs import QueueFull, Service, ShuttingDown, Unavailable
from server.metrics import Metrics

log = logsetup.get("http")

SERVICE = web.AppKey("service", Service)  # embedded JobService or cluster service
DATASET = web.AppKey("dataset", Dataset)
SETTINGS = web.AppKey("settings", Settings)
INFO = web.AppKey("info", dict)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI = web.AppKey("openapi", dict)  # built once per app: it names the loaded data

MAX_WAIT = 30.0
MAX_PAGE = 10_000  # entries per page of GET /api/jobs?limit=N
LISTING_CHUNK = 2_000  # entries built per turn of the event loop (~0.5 ms)
RETRY_AFTER = "1"


def submission_refusal(request: web.Request) -> web.Response | None:
    """Why a job POST is refused before its body matters: a cross-site browser
    request (403), or a body that does not say it is JSON (415)."""
    refusal = cross_site.refusal(request, "job submission")
    if refusal is not None:
        return refusal
    if not validation.is_json_type(request.content_type):
        return error(415, "a job is submitted with 'Content-Type: application/json'")
    return None


async def submit(endpoint: Endpoint, request: web.Request) -> web.Response:
    refusal = submission_refusal(request)
    if refusal is not None:
        return refusal
    service = request.app[SERVICE]
    try:
        body = validation.parse_body(await request.read())
        question, state = validation.job_fields(endpoint, body, request.app[DATASET])
        years = validation.year_fields(body, request.app[DATASET])
        job_id = await service.submit(endpoint.name, question, state, *years)
    except validation.BadRequest as exc:
        return error(400, str(exc))
    except ShuttingDown:
        return error(503, "shutting down")
    except QueueFull:
        return error(
            503, "the job queue is full; retry later", headers={"Retry-After": RETRY_AFTER}
        )
    except Unavailable as exc:
        return unavailable(exc)
    return web.json_response({"job_id": job_id})


def unavailable(exc: Unavailable) -> web.Response:
    """The job store cannot take or tell anything now (a full disk; cluster mode: Redis
    unreachable): nothing was decided, the client retries."""
    return error(
        503,
        f"{exc or 'the job store is unreachable'}; retry later",
        headers={"Retry-After": RETRY_AFTER},
    )


async def get_results(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    job_id = validation.job_id(request.match_info["job_id"])
    if job_id is None:
        return error(404, "Invalid job_id")
    try:
        wait = validation.wait_seconds(request.query.get("wait"), MAX_WAIT)
    except validation.BadRequest as exc:
        return error(400, str(exc))
    if "wait" not in request.query:
        # A poll without ?wait= (what existing clients send) usually arrives while its
        # job is in flight: a short grace answers it in this poll, not the next one.
        wait = request.app[SETTINGS].poll_grace
    try:
        state, body = await service.lookup(job_id, wait)
    except Unavailable as exc:
        return unavailable(exc)
    if state == status.RUNNING:
        return web.json_response({"status": "running"})
    if body is not None:
        return web.Response(body=body, content_type="application/json")
    if state == status.EVICTED:
        return error(
            410,
            f"job {job_id} finished long ago and its result was "
            "evicted (docs/guarantees.md: retention)",
        )
    return error(404, "Invalid job_id")


async def jobs(request: web.Request) -> web.StreamResponse:
    """Every retained job (or, with ?limit=N, one page of them after ?after=ID).

    The full listing is the answer existing clients know, byte for byte, but built
    and sent LISTING_CHUNK entries at a time with the event loop free in between: at
    100,000 jobs, building it in one go held the loop ~100 ms per call."""
    try:
        after, limit = validation.listing_page(
            request.query.get("after"), request.query.get("limit"), MAX_PAGE
        )
        entries = await request.app[SERVICE].entries(after)
    except validation.BadRequest as exc:
        return error(400, str(exc))
    except Unavailable as exc:
        return unavailable(exc)
    if limit is not None:
        page = list(itertools.islice(entries, limit + 1))
        more = len(page) > limit
        return web.json_response(
            {
                "status": "done",
                "data": [{f"job_id_{i}": s} for i, s in page[:limit]],
                "next_after": page[limit - 1][0] if more else None,
            }
        )
    chunk = list(itertools.islice(entries, LISTING_CHUNK))  # a failure here is a 500
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await response.write(b'{"status": "done", "data": [')
    separator = ""
    while chunk:
        text = ", ".join(f'{{"job_id_{i}": "{s}"}}' for i, s in chunk)
        await response.write(f"{separator}{text}".encode())
        separator = ", "
        await asyncio.sleep(0)  # other requests go first between chunks
        chunk = list(itertools.islice(entries, LISTING_CHUNK))
    await response.write(b"]}")
    await response.write_eof()
    return response


async def num_jobs(request: web.Request) -> web.Response:
    try:
        count = await request.app[SERVICE].num_jobs()
    except Unavailable as exc:
        return unavailable(exc)
    return web.json_response({"num_jobs": count})


def admin_refusal(request: web.Request) -> web.Response | None:
    """Not from another site's page (server.cross_site); then a token when one is
    set, otherwise a loopback client (docs/api.md, "Security")."""
    refusal = cross_site.refusal(request, "this admin action")
    if refusal is not None:
        return refusal
    token = request.app[SETTINGS].admin_token
    if token:
        # Header values may hold any byte (aiohttp keeps non-UTF-8 ones as surrogate
        # escapes), which a plain encode() would turn into a 500.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogateescape")):
            return None
        log.warning(
            "refused admin request %s from %s: missing or wrong token", request.path, request.remote
        )
        return error(
            401,
            "this admin action needs 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        if ipaddress.ip_address(request.remote or "").is_loopback:
            return None
    except ValueError:
        pass
    log.warning(
        "refused admin request %s from non-loopback client %s", request.path, request.remote
    )
    return error(
        403, "admin actions are only accepted from this machine (or set LESTATS_ADMIN_TOKEN)"
    )


async def graceful_shutdown(request: web.Request) -> web.Response:
    refusal = admin_refusal(request)
    if refusal is not None:
        return refusal
    service = request.app[SERVICE]
    service.begin_shutdown()
    return web.json_response({"status": "done" if service.drained else "running"})


async def info(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    pids = service.executor.pids() if service.executor else {}
    return web.json_response(
        {
            **request.app[INFO],
            "accepting": service.accepting,
            **service.health(),
            "pids": {"parent": os.getpid(), **pids},
        }
    )


async def questions(request: web.Request) -> web.Response:
    """Each question's text and better direction, and its CDC QuestionID ("id") when
    the data file has that column."""
    ds = request.app[DATASET]
    ids = ds.question_ids or [""] * len(ds.questions)
    return web.json_response(
        {
            "questions": [
                {"text": q, "direction": ds.direction(q), **({"id": i} if i else {})}
                for q, i in zip(ds.questions, ids)
            ]
        }
    )


async def years(request: web.Request) -> web.Response:
    return web.json_response(request.app[DATASET].year_summary())


async def states(request: web.Request) -> web.Response:
    return web.json_response({"states": request.app[DATASET].locations})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if not service.accepting:
        return error(503, "shutting down")
    reason = service.unready()
    if reason:  # embedded: jobs are still accepted (journaled) while only the pool is not
        return error(503, reason)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].exposition()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


ROUTES = [
    *(
        web.post(
            f"/api/{e.name}",
            functools.partial(submit, e),
            expect_handler=functools.partial(expect_continue, submission_refusal),
        )
        for e in ENDPOINTS.values()
    ),
    web.get("/api/get_results/{job_id}", get_results),
    web.get("/api/jobs", jobs),
    web.get("/api/num_jobs", num_jobs),
    # An action, so no HEAD (aiohttp adds one to every GET unless told): 405.
    web.get("/api/graceful_shutdown", graceful_shutdown, allow_head=False),
    web.get("/api/info", info),
    web.get("/api/questions", questions),
    web.get("/api/states", states),
    web.get("/api/years", years),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
    web.get("/openapi.json", openapi),
]
