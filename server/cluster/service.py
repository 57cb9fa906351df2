"""The front-end's job service in cluster mode: the routes' interface over Redis.

It offers what server.jobs.JobService offers the routes (submit, lookup, entries,
num_jobs, health, begin_shutdown, drained, accepting), with the job space in Redis:
- submit: one SUBMIT script; the id goes back to the client only after Redis answered.
- lookup: one round trip (state, body, counter) from any front-end; a long poll waits
  on this process's single pub/sub subscription, and checks Redis again at least
  every RECHECK seconds, so a notice lost while Redis restarted costs a little latency,
  never a wrong answer.
- Redis unreachable: every call raises jobs.Unavailable within the bounded socket
  timeouts (the routes answer 503 with Retry-After) and the next call reconnects.
- graceful shutdown: no new jobs; wait until every job this front-end acknowledged
  has finished (whichever worker runs it), then the caller stops the local workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from redis.exceptions import RedisError

from compute.messages import Job
from server import logsetup, status
from server.cluster import broker
from server.executor import health_of, pool_unready
from server.jobs import QueueFull, ShuttingDown, Unavailable
from server.serve import StartupError

log = logsetup.get("cluster")

RECHECK = 2.0  # seconds: a waiting long poll looks at Redis at least this often
LISTEN_PAUSE = (0.1, 2.0)
_STATES = {b"running": status.RUNNING, b"done": status.DONE, b"error": status.ERROR}


class ClusterJobService:
    def __init__(self, url: str, *, max_queue: int, retain: int):
        self.url = url
        self.max_queue = max_queue
        self.retain = retain
        self.accepting = False
        self.executor: Any = None
        self.fingerprint = ""
        self.listeners: list = []  # (event, job, ok), as JobService's
        self.idle_at_shutdown = False
        self.redis_fault: str | None = None  # why the subscription cannot be held now
        self.shutdown_requested = asyncio.Event()
        self.linger_cut = asyncio.Event()
        self._drained = asyncio.Event()
        self._own: dict[int, Job] = {}  # acknowledged here, not yet seen finished
        self._waiters: dict[int, list[asyncio.Future]] = {}
        self._highest = 0  # the highest id this front-end has seen
        self._tasks: list[asyncio.Task] = []
        self._redis: Any = None

    # -- life cycle ---------------------------------------------------------------------
    async def open(self, fingerprint: str) -> None:
        """Join the cluster: refuse other data than the cluster's, record retention,
        make sure the consumer group exists, subscribe to finished jobs."""
        self.fingerprint = fingerprint
        self._redis = broker.async_client(self.url)
        try:
            recorded = (await broker.register_cluster(self._redis, fingerprint)).decode()
            if recorded != fingerprint:
                raise StartupError(
                    f"this front-end's data (fingerprint {fingerprint}) differs from the "
                    f"cluster's ({recorded}); serve the same file, or empty the cluster "
                    "first (docs/cluster.md)"
                )
            await self._redis.hset(broker.META, "max_results", self.retain)
            with contextlib.suppress(RedisError):  # BUSYGROUP: it exists
                await self._redis.xgroup_create(
                    broker.stream(fingerprint), broker.GROUP, id="0", mkstream=True
                )
            self._highest = int(await self._redis.get(broker.NEXT_ID) or 0)
            policy = (await self._redis.info("memory")).get("maxmemory_policy")
        except broker.UNREACHABLE as exc:
            raise StartupError(
                f"redis at {broker.describe(self.url)} is unreachable ({exc})"
            ) from None
        if policy not in (None, "noeviction"):
            log.warning(
                "redis evicts keys when full (maxmemory-policy %s): it could drop "
                "jobs; set maxmemory-policy noeviction (docs/cluster.md)",
                policy,
            )
        self._submit = self._redis.register_script(broker.SUBMIT)
        self.in_background(self._listen())
        log.info(
            "joined the cluster at %s (data fingerprint %s)",
            broker.describe(self.url),
            fingerprint,
            extra=logsetup.CONSOLE,
        )

    def in_background(self, coroutine) -> None:
        """Run `coroutine` until close()."""
        self._tasks.append(asyncio.create_task(coroutine))

    def start(self, executor) -> None:
        self.executor = executor
        self.accepting = not self.shutdown_requested.is_set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._redis is not None:
            await self._redis.aclose()

    # -- the routes' interface ------------------------------------------------------
    async def submit(
        self,
        endpoint: str,
        question: str,
        state: str | None,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> int:
        if not self.accepting:
            raise ShuttingDown
        try:
            job_id = await self._submit(
                keys=[
                    broker.NEXT_ID,
                    broker.RUNNING,
                    broker.FINISHED,
                    broker.stream(self.fingerprint),
                ],
                args=[
                    endpoint,
                    question,
                    state or "",
                    self.fingerprint,
                    self._highest,
                    self.max_queue,
                    broker.JOB,
                    broker.years_field(year_start, year_end),
                ],
            )
        except broker.UNREACHABLE as exc:
            raise Unavailable(_unreachable(exc)) from None
        if job_id == 0:
            raise QueueFull
        self._highest = max(self._highest, job_id)
        job = Job(job_id, endpoint, question, state, year_start, year_end)
        self._own[job_id] = job
        log.info("job_id=%d running %s question=%r state=%r", job_id, endpoint, question, state)
        for listener in self.listeners:
            listener("submitted", job, True)
        return job_id

    async def lookup(self, job_id: int, wait: float) -> tuple[str, bytes | None]:
        try:
            if wait <= 0:
                return await self._read(job_id)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while True:
                # Listen before reading: a job that finishes after Redis answered the
                # read, but whose notice arrives before we await, still wakes us.
                waiter = loop.create_future()
                self._waiters.setdefault(job_id, []).append(waiter)
                try:
                    state, body = await self._read(job_id)
                    remaining = deadline - loop.time()
                    if state != status.RUNNING or remaining <= 0:
                        return state, body
                    await asyncio.wait((waiter,), timeout=min(RECHECK, remaining))
                finally:
                    self._forget_waiter(job_id, waiter)
        except broker.UNREACHABLE as exc:
            raise Unavailable(_unreachable(exc)) from None

    async def _read(self, job_id: int) -> tuple[str, bytes | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(broker.job_key(job_id), "state", "body")
            pipe.get(broker.NEXT_ID)
            (state, body), counter = await pipe.execute()
        counter = int(counter or 0)
        self._highest = max(self._highest, counter)
        if state is None:
            return (status.EVICTED if 0 < job_id <= counter else status.UNKNOWN), None
        state = _STATES[state]
        if state != status.RUNNING:
            self._finished(job_id, state == status.DONE)
        return state, body

    def _forget_waiter(self, job_id: int, waiter: asyncio.Future) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[job_id]

    async def entries(self, after: int) -> Iterator[tuple[int, str]]:
        """(id, state) of every job the cluster knows with an id above `after`."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(broker.RUNNING, f"({after}", "+inf")
                pipe.zrangebyscore(broker.FINISHED, f"({after}", "+inf")
                pipe.smembers(broker.FAILED)
                running, finished, failed = await pipe.execute()
        except broker.UNREACHABLE as exc:
            raise Unavailable(_unreachable(exc)) from None
        states = {int(i): status.DONE for i in finished}
        states.update((int(i), status.ERROR) for i in failed if int(i) in states)
        states.update((int(i), status.RUNNING) for i in running)
        return iter(sorted(states.items()))

    async def num_jobs(self) -> int:
        try:
            return await self._redis.zcard(broker.RUNNING)
        except broker.UNREACHABLE as exc:
            raise Unavailable(_unreachable(exc)) from None

    @property
    def running_count(self) -> int:
        """Jobs this front-end acknowledged that it has not yet seen finish."""
        return len(self._own)

    def health(self) -> dict[str, Any]:
        return {"pool": health_of(self.executor)}

    def unready(self) -> str | None:
        """Why this front-end cannot see jobs through now: Redis unreachable, or its
        own workers cannot run jobs (other nodes may)."""
        return self.redis_fault or pool_unready(self.executor)

    def begin_shutdown(self) -> None:
        if self.accepting:
            log.info(
                "graceful shutdown: no new jobs; %d acknowledged here still running",
                len(self._own),
                extra=logsetup.CONSOLE,
            )
        if not self.shutdown_requested.is_set():
            self.idle_at_shutdown = not self._own  # nothing to collect: no linger
        self.accepting = False
        self.shutdown_requested.set()
        if not self._own:
            self._drained.set()
        elif self._redis is not None:
            self.in_background(self._watch_own())

    @property
    def drained(self) -> bool:
        return not self.accepting and not self._own

    async def wait_drained(self) -> None:
        await self._drained.wait()

    # -- finished jobs ------------------------------------------------------------------
    def _finished(self, job_id: int, ok: bool) -> None:
        for waiter in self._waiters.pop(job_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        job = self._own.pop(job_id, None)
        if job is not None:
            for listener in self.listeners:
                listener("finished", job, ok)
            if not self._own and not self.accepting:
                self._drained.set()

    async def _listen(self) -> None:
        """The one subscription of this process: wake the waiters of finished jobs."""
        pause = LISTEN_PAUSE[0]
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(broker.CHANNEL)
                    self.redis_fault = None
                    self._wake_all()  # notices may have been missed while away
                    pause = LISTEN_PAUSE[0]
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None and message["type"] == "message":
                            for item in message["data"].split(b","):
                                job_id, _, ok = item.partition(b":")
                                self._finished(int(job_id), ok == b"1")
            except broker.UNREACHABLE as exc:
                # Not ready meanwhile: /readyz says so, and a draining front-end gives up
                # after job_timeout instead of waiting for Redis forever.
                self.redis_fault = _unreachable(exc)
                log.warning(
                    "lost the subscription to finished jobs (%s); again in %.1f s", exc, pause
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, LISTEN_PAUSE[1])

    def _wake_all(self) -> None:
        """Every waiter looks at Redis again (after a reconnection)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _watch_own(self) -> None:
        """While draining, look up the jobs acknowledged here every RECHECK seconds:
        a finish notice lost while Redis was away must not hold the shutdown."""
        while self._own:
            await asyncio.sleep(RECHECK)
            ids = list(self._own)[:1000]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.hget(broker.job_key(job_id), "state")
                    states = await pipe.execute()
            except broker.UNREACHABLE:
                continue
            for job_id, state in zip(ids, states):
                if state != b"running":  # done, error, or evicted since
                    self._finished(job_id, state != b"error")


async def start(service: ClusterJobService, shared, settings, stack, mark: str) -> None:
    """serve.py's cluster branch: join the cluster, start this machine's workers."""
    from server.cluster.node import NodePool

    await service.open(mark)
    stack.push_async_callback(service.close)
    pool = NodePool(
        shared.handle,
        settings.workers,
        settings.broker,
        mark,
        settings.claim_timeout,
        settings.max_results,
    )
    pool.start()
    stack.push_async_callback(pool.stop)
    service.in_background(_replace_dead(pool))
    service.start(pool)


async def _replace_dead(pool) -> None:
    while True:
        await asyncio.sleep(0.5)
        pool.replace_dead()


def _unreachable(exc: BaseException) -> str:
    return f"the job store (Redis) is unreachable: {exc}"
