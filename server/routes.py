"""Every route of the service, visible in one screen (ROUTES at the bottom).

The nine statistics are one table (compute.endpoints.ENDPOINTS): each becomes a
`POST /api/<name>` served by the same `submit` handler.
"""
from __future__ import annotations

import functools
import hmac
import ipaddress
import os

from aiohttp import web

from compute.dataset import Dataset
from compute.endpoints import ENDPOINTS, Endpoint
from server import logsetup, status, validation
from server.config import Settings
from server.errors import error
from server.jobs import JobService, QueueFull, ShuttingDown
from server.metrics import Metrics

log = logsetup.get("http")

SERVICE = web.AppKey("service", JobService)
DATASET = web.AppKey("dataset", Dataset)
SETTINGS = web.AppKey("settings", Settings)
INFO = web.AppKey("info", dict)
METRICS = web.AppKey("metrics", Metrics)
OPENAPI = web.AppKey("openapi", dict)  # built once per app: it names the loaded data

MAX_WAIT = 30.0
RETRY_AFTER = "1"


async def submit(endpoint: Endpoint, request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        body = validation.parse_body(await request.read())
        question, state = validation.job_fields(endpoint, body, request.app[DATASET])
        job = service.accept(endpoint.name, question, state)
    except validation.BadRequest as exc:
        return error(400, str(exc))
    except ShuttingDown:
        return error(503, "shutting down")
    except QueueFull:
        return error(503, "the job queue is full; retry later",
                     headers={"Retry-After": RETRY_AFTER})
    await service.journal.durable()
    return web.json_response({"job_id": job.id})


async def get_results(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    job_id = validation.job_id(request.match_info["job_id"])
    if job_id is None:
        return error(404, "Invalid job_id")
    try:
        wait = validation.wait_seconds(request.query.get("wait"), MAX_WAIT)
    except validation.BadRequest as exc:
        return error(400, str(exc))
    state = service.status.state(job_id)
    if state == status.RUNNING and wait > 0:
        await service.status.wait(job_id, wait)
        state = service.status.state(job_id)
    if state == status.RUNNING:
        return web.json_response({"status": "running"})
    if state in (status.DONE, status.ERROR):
        try:
            body = await service.result(job_id, state == status.DONE)
        except FileNotFoundError:
            state = status.EVICTED  # evicted between the lookup and the read
        else:
            return web.Response(body=body, content_type="application/json")
    if state == status.EVICTED:
        return error(410, f"job {job_id} finished long ago and its result was "
                          "evicted (docs/guarantees.md: retention)")
    return error(404, "Invalid job_id")


async def jobs(request: web.Request) -> web.Response:
    return web.json_response({"status": "done",
                              "data": request.app[SERVICE].status.listing()})


async def num_jobs(request: web.Request) -> web.Response:
    return web.json_response({"num_jobs": request.app[SERVICE].status.running_count})


def admin_refusal(request: web.Request) -> web.Response | None:
    """docs/api.md, "Security": a token when one is set, otherwise a loopback client."""
    token = request.app[SETTINGS].admin_token
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
        log.warning("refused admin request %s from %s: missing or wrong token",
                    request.path, request.remote)
        return error(401, "this admin action needs 'Authorization: Bearer <token>'",
                     headers={"WWW-Authenticate": "Bearer"})
    try:
        if ipaddress.ip_address(request.remote or "").is_loopback:
            return None
    except ValueError:
        pass
    log.warning("refused admin request %s from non-loopback client %s",
                request.path, request.remote)
    return error(403, "admin actions are only accepted from this machine "
                      "(or set LESTATS_ADMIN_TOKEN)")


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
    return web.json_response({**request.app[INFO], "accepting": service.accepting,
                              "pids": {"parent": os.getpid(), **pids}})


async def questions(request: web.Request) -> web.Response:
    """Each question's text and better direction, and its CDC QuestionID ("id") when
    the data file has that column."""
    ds = request.app[DATASET]
    ids = ds.question_ids or [""] * len(ds.questions)
    return web.json_response({"questions": [
        {"text": q, "direction": ds.direction(q), **({"id": i} if i else {})}
        for q, i in zip(ds.questions, ids)]})


async def states(request: web.Request) -> web.Response:
    return web.json_response({"states": request.app[DATASET].locations})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[SERVICE].accepting:
        return web.json_response({"status": "ready"})
    return error(503, "shutting down")


async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS].exposition()


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


ROUTES = [
    *(web.post(f"/api/{e.name}", functools.partial(submit, e)) for e in ENDPOINTS.values()),
    web.get("/api/get_results/{job_id}", get_results),
    web.get("/api/jobs", jobs),
    web.get("/api/num_jobs", num_jobs),
    web.get("/api/graceful_shutdown", graceful_shutdown),
    web.get("/api/info", info),
    web.get("/api/questions", questions),
    web.get("/api/states", states),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
    web.get("/openapi.json", openapi),
]
