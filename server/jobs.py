"""The job service: accepts jobs, remembers them, collects their outcomes.

accept():  id from the status table → journal line on disk → status "running" →
           the executor. The client's 200 {"job_id"} follows only after all of that.
outcomes:  the worker writes each result file (atomically) before it reports the job;
           the event loop then marks it done and wakes long-pollers: a job is never
           "done" before its result is on disk.
shutdown:  stop accepting, wait until every accepted job has finished, stop the
           executor; the caller then lingers and releases the shared memory.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from compute.messages import Job, Outcome, job_key
from server import logsetup
from server.journal import JobJournal
from server.results import ResultStore
from server.status import StatusTable

log = logsetup.get("jobs")


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


class JobService:
    def __init__(self, state_dir: Path, *, max_queue: int, retain: int, fsync: bool = False):
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.max_queue = max_queue
        self.journal = JobJournal(state_dir, fsync)
        self.results = ResultStore(state_dir, fsync)
        self.status = StatusTable(retain=retain)
        self.accepting = False
        self.executor = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drained = asyncio.Event()
        self.shutdown_requested = asyncio.Event()
        self.linger_cut = asyncio.Event()
        # No job queued or running when the shutdown was asked for: there is no last
        # answer for a client to collect, so the linger is skipped.
        self.idle_at_shutdown = False
        self.listeners: list[Callable[[str, Job, bool], None]] = []  # (event, job, ok)

    def open(self) -> list[Job]:
        """Load what earlier runs left: finished results and jobs a crash interrupted."""
        finished = self.results.scan()
        recovery = self.journal.open(finished, max(finished, default=0))
        self.status.next_id = recovery.next_id
        for job_id in sorted(finished):
            self.status.add_finished(job_id, finished[job_id])
        for job in recovery.unfinished:
            self.status.add_running(job.id)
        if recovery.unfinished:
            self._drained.clear()  # a signal during start-up must still wait for these
        self._evict()
        return recovery.unfinished

    def start(self, executor, unfinished: list[Job]) -> None:
        self._loop = asyncio.get_running_loop()
        self.executor = executor
        self.accepting = not self.shutdown_requested.is_set()
        if unfinished:
            log.info("running again %d job(s) a previous run did not finish: ids %d-%d",
                     len(unfinished), unfinished[0].id, unfinished[-1].id,
                     extra=logsetup.CONSOLE)
            executor.submit(unfinished)

    def accept(self, endpoint: str, question: str, state: str | None) -> Job:
        """Take a validated job (event loop only). The journal line is written before
        the id leaves this function."""
        if not self.accepting:
            raise ShuttingDown
        if self.status.running_count >= self.max_queue:
            raise QueueFull
        job = Job(self.status.new_id(), endpoint, question, state)
        self.journal.append(job)
        self.status.add_running(job.id)
        log.info("job_id=%d running %s question=%r state=%r", job.id, endpoint,
                 question, state)
        self.executor.submit((job,))
        for listener in self.listeners:
            listener("submitted", job, True)
        return job

    def on_done(self, finished: list[tuple[Job, Outcome]]) -> None:
        """Event loop: the workers have written these results; publish them."""
        changes = []
        for job, outcome in finished:
            if outcome.detail:
                log.error("job_id=%d failed: %s", outcome.id, outcome.detail)
            if self.status.finish(job.id, outcome.ok):
                self.results.remember(job.id, job_key(job), outcome.body)
                changes.append(f"job_id={job.id} {'done' if outcome.ok else 'error'}")
                for listener in self.listeners:
                    listener("finished", job, outcome.ok)
        if changes:  # one record per batch of outcomes, one "job_id=N state" per job
            log.info("%s", ", ".join(changes))
        self._evict()
        if not self.accepting and self.status.running_count == 0:
            self._drained.set()

    def _evict(self) -> None:
        evicted = self.status.evict()
        if evicted:
            log.info("evicted %d finished job(s) beyond the retention limit (ids %d-%d)",
                     len(evicted), evicted[0][0], evicted[-1][0])
            self.journal.evicted([job_id for job_id, _ in evicted])  # before the files go
            if self._loop is not None:
                self._loop.run_in_executor(None, self.results.delete, evicted)
            else:
                self.results.delete(evicted)

    async def result(self, job_id: int, ok: bool) -> bytes:
        body = self.results.cached(job_id)
        if body is None:
            body = await asyncio.get_running_loop().run_in_executor(
                None, self.results.read, job_id, ok)
        return body

    def begin_shutdown(self) -> None:
        if self.accepting:
            log.info("graceful shutdown: no new jobs; %d still running",
                     self.status.running_count, extra=logsetup.CONSOLE)
        if not self.shutdown_requested.is_set():
            self.idle_at_shutdown = self.status.running_count == 0
        self.accepting = False
        self.shutdown_requested.set()
        if self.status.running_count == 0:
            self._drained.set()

    @property
    def drained(self) -> bool:
        return not self.accepting and self.status.running_count == 0

    async def wait_drained(self) -> None:
        await self._drained.wait()

    def close(self) -> None:
        self.journal.close()
