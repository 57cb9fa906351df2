"""The embedded executor (server.executor.Executor): worker processes on this machine.

LocalPool runs TP_NUM_OF_THREADS worker processes on this machine:
- Jobs submitted during one turn of the event loop are handed together to the
  dispatcher thread, which puts them into the manager queue in batches (one manager
  round trip per batch, not per job) sized to spread the backlog over all workers.
  The thread exists because a manager queue's put() is a blocking round trip.
- Each worker reports on its own pipe: `Taken` when it picks up a batch, then `Done`
  once the results are written. The pipes and the processes' sentinels are watched by
  the event loop itself (add_reader), so an outcome reaches the status table without
  a thread hand-off.
- When a worker dies, its sentinel fires: the jobs it had taken are run again on a
  replacement worker, or fail after they have been running in MAX_ATTEMPTS workers
  that died (a poison job must not take the pool down). Only a death in a batch of
  one counts against a job: the jobs of a bigger batch that died are run again alone
  first, so a poison job is found and the innocent jobs of its batch are not
  abandoned with it.
"""
from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterable
from multiprocessing.managers import SyncManager

from compute.messages import Batch, Done, Job, Outcome, Taken
from compute.shared import SharedHandle
from server import logsetup
from server.executor import OnDone
from server.pool import worker
from server.results import ResultFiles

log = logsetup.get("pool")

MAX_ATTEMPTS = 3
MAX_BATCH = 64
SWEEP_SECONDS = 0.5
_STOP = None

class LocalPool:
    def __init__(self, handle: SharedHandle, workers: int, files: ResultFiles,
                 on_done: OnDone):
        self._handle = handle
        self._count = workers
        self._files = files
        self._on_done = on_done
        self._ctx = mp.get_context("spawn")
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()  # lists of jobs
        self._pending: list[Job] = []
        self._inflight: dict[int, Job] = {}      # submitted, not yet finished
        self._queued: dict[int, float] = {}      # id → when it went to the manager queue
        self._owned: dict[int, set[int]] = {}    # worker index → ids it has taken
        self._attempts: dict[int, int] = {}
        self._alone: set[int] = set()            # ids lost in a batch: next time alone
        self._workers: dict[int, mp.Process] = {}
        self._pipes: dict[int, object] = {}
        self._lock = threading.Lock()            # _queued, _waiting_batches: dispatcher's too
        self._credit = threading.Condition(self._lock)
        self._waiting_batches = 0                # put into the manager queue, not yet taken
        self._newest_taken = 0.0                 # when the newest batch taken was queued
        self._suspects: set[int] = set()
        self._stopping = False
        self.deaths = 0    # workers that died unexpectedly
        self.reruns = 0    # jobs run again because their worker died

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._manager = SyncManager(ctx=self._ctx)
        self._manager.start(initializer=worker.quiet_child)
        # Bounded: batches wait in our own queue (cheap) rather than in the manager.
        self._jobs = self._manager.Queue(maxsize=2 * self._count)
        for index in range(self._count):
            self._spawn(index)
        self._dispatcher = threading.Thread(target=self._dispatch, name="pool-dispatcher",
                                            daemon=True)
        self._dispatcher.start()
        self._sweeper = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def _spawn(self, index: int) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=worker.main, name=f"lestats-worker-{index}", daemon=True,
            args=(index, self._handle, self._jobs, sender, os.getpid(), self._files))
        process.start()
        sender.close()  # the child holds the only writer
        self._workers[index], self._pipes[index] = process, receiver
        self._owned[index] = set()
        self._loop.add_reader(receiver.fileno(), self._receive, index)
        # add_reader (libuv) makes the fd non-blocking, but Connection.recv() expects a
        # blocking fd: a message larger than the pipe buffer would fail half-read. The
        # rest of a message is always on its way, so the loop waits microseconds at most.
        os.set_blocking(receiver.fileno(), True)
        self._loop.add_reader(process.sentinel, self._worker_died, index)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers. Call after every submitted job has finished."""
        self._stopping = True
        self._sweeper.cancel()
        with self._credit:
            self._credit.notify()
        self._incoming.put(_STOP)
        await self._loop.run_in_executor(None, self._stop_blocking, timeout)
        for index in list(self._workers):
            self._forget(index)
        self._manager.shutdown()

    def _stop_blocking(self, timeout: float) -> None:
        self._dispatcher.join(timeout)
        try:
            for _ in self._workers:
                self._jobs.put(None, timeout=1.0)
        except (queue.Full, OSError, EOFError):
            pass
        deadline = time.monotonic() + timeout
        for process in list(self._workers.values()):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)

    def pids(self) -> dict:
        manager = getattr(self._manager, "_process", None)
        return {"workers": [p.pid for p in self._workers.values()],
                "manager": manager.pid if manager else None}

    # -- submission ----------------------------------------------------------------
    def submit(self, jobs: Iterable[Job]) -> None:
        """Event loop only. Jobs of one loop turn wake the dispatcher once."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        for job in jobs:
            self._inflight[job.id] = job
            self._pending.append(job)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._incoming.put(pending)

    def _dispatch(self) -> None:
        """Dispatcher thread: lists of jobs in, batches into the manager queue.

        It keeps at most one batch per worker waiting in the manager queue. While the
        workers are busy, new jobs gather here and go out together as soon as a worker
        takes a batch: under load, batches grow and the round trips per job fall."""
        while True:
            with self._credit:
                while self._waiting_batches >= self._count and not self._stopping:
                    if not self._credit.wait(SWEEP_SECONDS):
                        break  # no batch taken for a while: count again, below
            if self._waiting_batches >= self._count and not self._stopping:
                self._resync_credit()  # a batch may have vanished with a dead worker
                continue
            jobs = self._incoming.get()
            if jobs is _STOP:
                return
            while True:  # take whatever else is already waiting
                try:
                    more = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._incoming.put(_STOP)
                    break
                jobs.extend(more)
            with self._lock:
                free = max(1, self._count - self._waiting_batches)
                alone = [(job,) for job in jobs if job.id in self._alone]
                if alone:
                    jobs = [job for job in jobs if job.id not in self._alone]
            size = min(MAX_BATCH, max(1, math.ceil(len(jobs) / free)))
            for batch in alone + [jobs[i:i + size] for i in range(0, len(jobs), size)]:
                now = time.monotonic()
                with self._lock:
                    self._waiting_batches += 1
                    for job in batch:
                        self._queued[job.id] = now
                try:
                    self._jobs.put(Batch(tuple(batch)))
                except (OSError, EOFError):
                    return  # the manager is gone: we are stopping

    # -- collection (event loop) -------------------------------------------------------
    def _receive(self, index: int) -> None:
        # Read every message already in the pipe (a Taken and its Done often arrive
        # together), then go back to the loop.
        pipe = self._pipes[index]
        try:
            while pipe.poll():
                self._handle_message(index, pipe.recv())
                if index not in self._pipes:
                    return
        except (EOFError, OSError):
            self._loop.remove_reader(pipe.fileno())  # its sentinel reports the death

    def _handle_message(self, index: int, message) -> None:
        if isinstance(message, Taken):
            with self._credit:
                for job_id in message.ids:
                    since = self._queued.pop(job_id, 0.0)
                    self._newest_taken = max(self._newest_taken, since)
                self._waiting_batches = max(0, self._waiting_batches - 1)
                self._credit.notify()
            self._owned[index].update(message.ids)
        elif isinstance(message, Done):
            finished = []
            for outcome in message.outcomes:
                self._owned[index].discard(outcome.id)
                self._attempts.pop(outcome.id, None)
                self._alone.discard(outcome.id)
                job = self._inflight.pop(outcome.id, None)
                if job is not None:  # else a duplicate run's outcome: the first counted
                    finished.append((job, outcome))
            if finished:
                self._on_done(finished)

    def _worker_died(self, index: int) -> None:
        process, pipe = self._workers[index], self._pipes[index]
        process.join()
        while True:  # what it sent before dying still counts
            try:
                if not pipe.poll():
                    break
                self._handle_message(index, pipe.recv())
            except (EOFError, OSError):
                break
        lost = [self._inflight[i] for i in sorted(self._owned.get(index, ()))
                if i in self._inflight]
        self._forget(index)
        if self._stopping:
            return
        self.deaths += 1
        log.error("worker %d (pid %s) died with exit code %s; %d job(s) to run again",
                  index, process.pid, process.exitcode, len(lost))
        self._spawn(index)
        self._retry(lost)

    def _resync_credit(self) -> None:
        """Dispatcher thread: a worker that died may have taken a batch without saying
        so; count the batches really waiting again (a short round trip to the manager)."""
        try:
            waiting = self._jobs.qsize()
        except (OSError, EOFError):
            return
        with self._credit:
            self._waiting_batches = waiting
            self._credit.notify()

    def _forget(self, index: int) -> None:
        process, pipe = self._workers.pop(index), self._pipes.pop(index)
        self._owned.pop(index, None)
        self._loop.remove_reader(pipe.fileno())
        self._loop.remove_reader(process.sentinel)
        pipe.close()

    def _retry(self, jobs: list[Job]) -> None:
        again, failed = [], []
        for job in jobs:
            if len(jobs) > 1:  # which of them killed it? run each alone to find out
                with self._lock:
                    self._alone.add(job.id)
                again.append(job)
                continue
            attempts = self._attempts.get(job.id, 0) + 1
            self._attempts[job.id] = attempts
            if attempts < MAX_ATTEMPTS:
                again.append(job)
                continue
            self._inflight.pop(job.id, None)
            self._attempts.pop(job.id, None)
            self._alone.discard(job.id)
            body = worker.error_body(f"the job was running in {attempts} worker processes "
                                     "that died; it was abandoned")
            try:
                self._files.write(job.id, False, body)
                self._files.commit()
                failed.append((job, Outcome(job.id, False, body)))
            except OSError as exc:
                failed.append((job, Outcome(job.id, False, body, str(exc), stored=False)))
        self.reruns += len(again)
        if again:
            self.submit(again)
        if failed:
            self._on_done(failed)

    def _sweep(self) -> None:
        """Find jobs that left the manager queue without reaching a live worker.

        A worker can die between taking a batch and reporting Taken, and the manager
        can hand a batch to a worker that has just died (its get() was still waiting
        in the manager). Such a job is neither owned nor in the queue. The queue is
        FIFO, so a job queued before a batch that a live worker has taken has left
        the queue; and when the queue is empty, every job not yet reported has. Jobs
        are only suspected after half a second unreported and run again only if
        still unreported at the next sweep (a live worker reports within
        microseconds). Running a job twice is harmless: only the first outcome counts.
        """
        self._sweeper = self._loop.call_later(SWEEP_SECONDS, self._sweep)
        if self._stopping:
            return
        now = time.monotonic()
        with self._lock:
            old = {i: since for i, since in self._queued.items()
                   if since < now - SWEEP_SECONDS}
        if not old:
            self._suspects = set()
            return
        gone = {i for i, since in old.items() if since < self._newest_taken}
        if len(gone) < len(old):
            try:  # rare: only jobs unreported for half a second get here
                if self._jobs.qsize() == 0:
                    gone = set(old)
            except (OSError, EOFError):
                return
        lost_ids = gone & self._suspects
        self._suspects = gone - lost_ids
        with self._lock:
            for job_id in lost_ids:
                self._queued.pop(job_id, None)
        lost = [self._inflight[i] for i in sorted(lost_ids) if i in self._inflight]
        if lost:
            log.error("%d job(s) were taken by a worker that died; running them again",
                      len(lost))
            self._retry(lost)
