"""The job service: accepts jobs, remembers them, collects their outcomes.

accept():  id from the status table → journal line on disk → status "running" →
           the executor. The client's 200 {"job_id"} follows only after all of that.
outcomes:  the worker writes each result file (atomically) before it reports the job;
           the event loop then marks it done and wakes long-pollers: a job is never
           "done" before its result is on disk.
shutdown:  stop accepting, wait until every accepted job has finished, stop the
           executor; the caller then lingers and releases the shared memory.
storage:   when the journal or a result cannot be written (server.storage), new jobs
           are refused with 503 and no id is used up; a job whose result could not be
           stored stays "running" and is run again once the storage works (a check
           every second); at shutdown such jobs are left in the journal, and the next
           start runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from compute.messages import Job, Outcome, job_key
from server import logsetup, storage
from server.executor import health_of, pool_unready
from server.journal import MAX_JOB_ID, JobJournal, JournalError
from server.pool.worker import error_body
from server.results import DAMAGED, ResultStore
from server.statelock import StateDirError
from server.status import DONE, ERROR, EVICTED, RUNNING, StatusTable

log = logsetup.get("jobs")


class Service(Protocol):
    """What the routes, the metrics and the server's life cycle use of a job service:
    JobService below (embedded) and server.cluster.service.ClusterJobService offer it."""

    accepting: bool
    executor: Any
    listeners: list[Callable[[str, Job, bool], None]]
    shutdown_requested: asyncio.Event
    linger_cut: asyncio.Event
    idle_at_shutdown: bool  # nothing was in flight when the shutdown was asked for

    async def submit(
        self,
        endpoint: str,
        question: str,
        state: str | None,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> int: ...
    async def lookup(self, job_id: int, wait: float) -> tuple[str, bytes | None]: ...
    async def entries(self, after: int) -> Iterator[tuple[int, str]]: ...
    async def num_jobs(self) -> int: ...
    @property
    def running_count(self) -> int: ...
    def health(self) -> dict[str, Any]: ...
    def unready(self) -> str | None: ...
    def begin_shutdown(self) -> None: ...
    @property
    def drained(self) -> bool: ...
    async def wait_drained(self) -> None: ...


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


class Unavailable(Exception):
    """The job store cannot record or tell anything now; the message says why (a full
    disk; cluster mode: Redis unreachable). Nothing was decided: the client retries."""


class JobService:
    def __init__(self, state_dir: Path, *, max_queue: int, retain: int, fsync: bool = False):
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.max_queue = max_queue
        self.journal = JobJournal(state_dir, fsync)
        self.results = ResultStore(state_dir, fsync)
        self.storage = storage.StorageHealth(state_dir, self.results.files.dir)
        self._parked: dict[int, Job] = {}  # results not stored: run again when writable
        self._unjournaled: list[tuple[int, bool]] = []  # evictions not yet journaled
        self._watcher: asyncio.Task | None = None
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

    def open(self, dataset: str | None = None) -> list[Job]:
        """Load what earlier runs left: finished results and jobs a crash interrupted.
        `dataset` is the loaded data's fingerprint (compute.dataset.Dataset.fingerprint):
        recorded with every new job, and an interrupted job accepted under another one
        answers an error instead of running. A state dir that cannot be used raises
        StateDirError (one line)."""
        self.journal.dataset = dataset
        try:
            self.storage.remove_stale_probes()
            finished, empty = self.results.scan()
            recovery = self.journal.open(finished, max((*finished, *empty), default=0))
        except JournalError as exc:
            raise StateDirError(str(exc)) from None
        except OSError as exc:
            raise StateDirError(
                f"{self.results.files.dir} cannot be used ({exc.strerror or exc})"
            ) from None
        self.status.next_id = recovery.next_id
        unfinished = []
        for job in recovery.unfinished:
            accepted_under = recovery.datasets.get(job.id)
            if accepted_under is not None and accepted_under != dataset:
                # Never compute a job on other data than it was asked of.
                finished[job.id] = False
                self._settle(
                    job.id,
                    error_body(
                        f"the data changed since this job was accepted (dataset "
                        f"{accepted_under}, now {dataset}); please ask again"
                    ),
                )
            else:
                unfinished.append(job)
        rerun = {job.id for job in unfinished}
        for job_id in sorted(empty - rerun - finished.keys()):
            finished[job_id] = False  # its result is lost and its question unknown
            self._settle(job_id, DAMAGED)
        if empty:
            log.warning(
                "%d result file(s) were empty (lost by a power loss?): %d run "
                "again, the others answer an error",
                len(empty),
                len(empty & rerun),
            )
        for job_id in sorted(finished):
            self.status.add_finished(job_id, finished[job_id])
        for job in unfinished:
            self.status.add_running(job.id)
        if unfinished:
            self._drained.clear()  # a signal during start-up must still wait for these
        self._evict()
        return unfinished

    def _settle(self, job_id: int, body: bytes) -> None:
        """Start-up: give a job that cannot be run its error answer, on disk."""
        try:
            self.results.files.write(job_id, False, body)
        except OSError as exc:
            raise StateDirError(
                f"cannot write the answer of job {job_id} to "
                f"{self.results.files.dir} ({exc.strerror or exc})"
            ) from None

    def start(self, executor, unfinished: list[Job]) -> None:
        self._loop = asyncio.get_running_loop()
        self.executor = executor
        self.accepting = not self.shutdown_requested.is_set()
        self._watcher = asyncio.ensure_future(self._watch_storage())
        if unfinished:
            log.info(
                "running again %d job(s) a previous run did not finish: ids %d-%d",
                len(unfinished),
                unfinished[0].id,
                unfinished[-1].id,
                extra=logsetup.CONSOLE,
            )
            executor.submit(unfinished)

    def accept(
        self,
        endpoint: str,
        question: str,
        state: str | None,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> Job:
        """Take a validated job (event loop only). The journal line is written before
        the id leaves this function."""
        if not self.accepting:
            raise ShuttingDown
        if self.storage.fault:
            raise Unavailable(self.storage.fault)
        if self.status.running_count >= self.max_queue:
            raise QueueFull
        if self.status.next_id > MAX_JOB_ID:
            raise Unavailable("no job ids are left (they have at most 18 digits)")
        job = Job(self.status.next_id, endpoint, question, state, year_start, year_end)
        try:
            self.journal.append(job)
        except OSError as exc:
            # Nothing of the line is left and the id is not used up: the next job gets it.
            self.storage.failed(storage.describe("the job journal cannot be written", exc))
            raise Unavailable(self.storage.fault) from None
        self.status.new_id()
        self.status.add_running(job.id)
        log.info(
            "job_id=%d running %s question=%r state=%r%s",
            job.id,
            endpoint,
            question,
            state,
            "" if year_start is None and year_end is None else f" years={year_start}..{year_end}",
        )
        self.executor.submit((job,))
        for listener in self.listeners:
            listener("submitted", job, True)
        return job

    # -- what the routes call; server.cluster.service.ClusterJobService offers the same
    async def submit(
        self,
        endpoint: str,
        question: str,
        state: str | None,
        year_start: int | None = None,
        year_end: int | None = None,
    ) -> int:
        job = self.accept(endpoint, question, state, year_start, year_end)
        await self.durable()  # a failed fsync: journaled, runs, but not acknowledged
        return job.id

    async def lookup(self, job_id: int, wait: float) -> tuple[str, bytes | None]:
        """(state, body): the body of a finished job; a running job is waited for up to
        `wait` seconds first."""
        state = self.status.state(job_id)
        if state == RUNNING and wait > 0:
            await self.status.wait(job_id, wait)
            state = self.status.state(job_id)
        if state in (DONE, ERROR):
            try:
                return state, await self.result(job_id, state == DONE)
            except FileNotFoundError:
                return EVICTED, None  # evicted between the lookup and the read
        return state, None

    async def entries(self, after: int) -> Iterator[tuple[int, str]]:
        return self.status.entries(after)

    async def num_jobs(self) -> int:
        return self.status.running_count

    @property
    def running_count(self) -> int:
        return self.status.running_count

    def health(self) -> dict[str, Any]:
        return {"storage_fault": self.storage.fault, "pool": health_of(self.executor)}

    def unready(self) -> str | None:
        """Why new jobs would not run now, or None."""
        return self.storage.fault or pool_unready(self.executor)

    def on_done(self, finished: list[tuple[Job, Outcome]]) -> None:
        """Event loop: the workers have written these results; publish them."""
        changes = []
        for job, outcome in finished:
            if not outcome.stored:  # not an answer: the storage failed; run it later
                self._parked[job.id] = job
                self.storage.failed(storage.describe("results cannot be written", outcome.detail))
                continue
            if outcome.detail:
                log.error("job_id=%d failed: %s", outcome.id, outcome.detail)
            if self.status.finish(job.id, outcome.ok):
                self.results.remember(job.id, job_key(job), outcome.body, outcome.ok)
                changes.append(f"job_id={job.id} {'done' if outcome.ok else 'error'}")
                for listener in self.listeners:
                    listener("finished", job, outcome.ok)
        if changes:  # one record per batch of outcomes, one "job_id=N state" per job
            log.info("%s", ", ".join(changes))
        self._evict()
        if self.drained:
            self._drained.set()

    def _evict(self) -> None:
        evicted = self.status.evict()
        if evicted:
            log.info(
                "evicted %d finished job(s) beyond the retention limit (ids %d-%d)",
                len(evicted),
                evicted[0][0],
                evicted[-1][0],
            )
        self._unjournaled.extend(evicted)
        if not self._unjournaled:
            return
        try:  # before the files go
            self.journal.evicted([job_id for job_id, _ in self._unjournaled])
        except OSError as exc:
            # They answer 410 already; their files stay until the line can be written.
            self.storage.failed(storage.describe("the job journal cannot be written", exc))
            return
        evicted, self._unjournaled = self._unjournaled, []
        if self._loop is not None:
            self._loop.run_in_executor(None, self.results.delete, evicted)
        else:
            self.results.delete(evicted)

    async def durable(self) -> None:
        """Every journal line so far is on stable storage (fsync mode), or
        Unavailable."""
        try:
            await self.journal.durable()
        except OSError as exc:
            self.storage.failed(storage.describe("the job journal cannot be synced", exc))
            raise Unavailable(self.storage.fault) from None

    async def _watch_storage(self) -> None:
        """Every second, off the event loop: is the storage failing, or back?"""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(storage.CHECK_SECONDS)
            faulted = self.storage.fault is not None
            problem = await loop.run_in_executor(None, self.storage.check, faulted)
            if problem:
                self.storage.failed(problem)
            elif faulted:
                self._storage_back()

    def _storage_back(self) -> None:
        try:
            self.journal.repair()
        except OSError as exc:
            self.storage.failed(storage.describe("the job journal cannot be written", exc))
            return
        self.storage.recovered()
        self._evict()
        if self._parked and not self._drained.is_set():
            parked, self._parked = list(self._parked.values()), {}
            log.info(
                "running again %d job(s) whose results could not be stored",
                len(parked),
                extra=logsetup.CONSOLE,
            )
            self.executor.submit(parked)

    async def result(self, job_id: int, ok: bool) -> bytes:
        body = self.results.cached(job_id)
        if body is None:
            body = await asyncio.get_running_loop().run_in_executor(
                None, self.results.read, job_id, ok
            )
            if body is None:
                log.error("job_id=%d: its result file is damaged; answering an error", job_id)
                body = DAMAGED
        return body

    def begin_shutdown(self) -> None:
        if self.accepting:
            log.info(
                "graceful shutdown: no new jobs; %d still running",
                self.status.running_count,
                extra=logsetup.CONSOLE,
            )
        if not self.shutdown_requested.is_set():
            self.idle_at_shutdown = self.status.running_count == 0
        self.accepting = False
        self.shutdown_requested.set()
        if self._parked:
            log.warning(
                "%d job(s) whose results could not be stored stay in the journal; "
                "the next start runs them",
                len(self._parked),
                extra=logsetup.CONSOLE,
            )
        if self.drained:
            self._drained.set()

    @property
    def drained(self) -> bool:
        """Not accepting, and every job finished or parked (safe in the journal)."""
        return not self.accepting and self.status.running_count == len(self._parked)

    async def wait_drained(self) -> None:
        await self._drained.wait()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self.journal.close()
