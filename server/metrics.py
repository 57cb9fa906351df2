"""Prometheus metrics (GET /metrics), through the official client library.

Each application has its own registry, so several apps (in tests) never share counts.
Job counts come from JobService's listeners, HTTP counts from a middleware that labels
by route pattern (`/api/get_results/{job_id}`, never the raw path: label values must
stay few), and the gauges are read when Prometheus scrapes.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from compute.messages import Job
from server import logsetup
from server.executor import health_of
from server.jobs import Service

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class Metrics:
    def __init__(self, service: Service):
        self.registry = CollectorRegistry()
        r = self.registry
        self.submitted = Counter(
            "lestats_jobs_submitted", "Jobs accepted", ["endpoint"], registry=r
        )
        self.finished = Counter(
            "lestats_jobs_finished", "Jobs finished", ["endpoint", "outcome"], registry=r
        )
        self.latency = Histogram(
            "lestats_job_seconds",
            "Time from accepting a job to its result being stored",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "lestats_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        Gauge("lestats_jobs_running", "Jobs queued or running", registry=r).set_function(
            lambda: service.running_count
        )
        Gauge(
            "lestats_accepting_jobs", "1 while accepting jobs, 0 during shutdown", registry=r
        ).set_function(lambda: float(service.accepting))
        storage = getattr(service, "storage", None)  # the embedded mode's state dir
        if storage is not None:
            Gauge(
                "lestats_storage_writable",
                "0 while the journal or results cannot be "
                "written (docs/guarantees.md: a full or read-only disk)",
                registry=r,
            ).set_function(lambda: float(storage.fault is None))
            Gauge(
                "lestats_storage_faults",
                "Times the state dir went from writable to failing",
                registry=r,
            ).set_function(lambda: storage.faults)
        Gauge(
            "lestats_worker_deaths", "Worker processes that died unexpectedly", registry=r
        ).set_function(lambda: getattr(service.executor, "deaths", 0))
        # Whether the deaths were made good: 0 while the pool is below its size, has no
        # manager, or its manager does not answer (docs/pool.md).
        Gauge(
            "lestats_pool_ready", "1 while the worker pool can run jobs", registry=r
        ).set_function(lambda: float(health_of(service.executor)["ready"]))
        r.register(_LogDrops())
        self._started: dict[int, float] = {}
        service.listeners.append(self.on_job)

    def on_job(self, event: str, job: Job, ok: bool) -> None:
        if event == "submitted":
            self._started[job.id] = time.monotonic()
            self.submitted.labels(job.endpoint).inc()
            return
        self.finished.labels(job.endpoint, "done" if ok else "error").inc()
        started = self._started.pop(job.id, None)
        if started is not None:  # jobs recovered at start-up have no start time
            self.latency.labels(job.endpoint).observe(time.monotonic() - started)

    def middleware(self):
        counters: dict[tuple, Counter] = {}  # labels() takes a lock; look up once

        @web.middleware
        async def count_requests(request: web.Request, handler):
            response = await handler(request)
            route = request.match_info.route.resource
            key = (
                route.canonical if route is not None else "unmatched",
                request.method,
                response.status,
            )
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = self.requests.labels(*key[:2], str(key[2]))
            counter.inc()
            return response

        return count_requests

    def exposition(self) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


class _LogDrops(Collector):
    """Log records dropped rather than held without bound (server.logsetup)."""

    def collect(self):
        family = CounterMetricFamily(
            "lestats_log_records_dropped",
            "Log records dropped: the log writer could "
            "not keep up (sink=queue), or stderr was blocked or gone (sink=console)",
            labels=["sink"],
        )
        for sink, count in sorted(logsetup.dropped().items()):
            family.add_metric([sink], count)
        yield family
