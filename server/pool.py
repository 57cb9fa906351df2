"""Dispatch of jobs to worker processes, behind a small interface.

`Executor` is all the rest of the server knows: submit jobs (from the event loop,
never blocking), get outcomes through a callback (from a pool thread), stop. LocalPool
implements it with TP_NUM_OF_THREADS worker processes on this machine; a distributed
executor could replace it without touching compute/ or the routes.

LocalPool, like CPython's ProcessPoolExecutor, owns two threads:
- the dispatcher moves jobs from an in-process queue into the manager queue, in
  batches (one manager round trip per batch, not per job) sized to spread the
  backlog over all workers;
- the collector waits on every worker's pipe and process sentinel at once. Workers
  report `Taken` when they pick up a batch and `Done` with the outcomes, so when a
  worker dies the collector knows exactly which jobs died with it: it runs them again
  on a replacement worker, or gives up on a job after it has killed MAX_ATTEMPTS
  workers (a poison job must not take the pool down). Only a death in a batch of one
  counts against a job: the jobs of a bigger batch that died are run again alone
  first, so a poison job is found and the innocent jobs of its batch are not
  abandoned with it.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.managers import SyncManager
from typing import Callable, Iterable, Protocol

from compute import worker
from compute.messages import Batch, Done, Job, Outcome, Taken
from compute.shared import SharedHandle
from server import logsetup

log = logsetup.get("pool")

MAX_ATTEMPTS = 3
MAX_BATCH = 64
_TICK = 0.5
_STOP = object()


class Executor(Protocol):
    def start(self) -> None: ...
    def submit(self, jobs: Iterable[Job]) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...
    def pids(self) -> dict: ...


OnDone = Callable[[list[Outcome]], None]


class LocalPool:
    def __init__(self, handle: SharedHandle, workers: int, on_done: OnDone):
        self._handle = handle
        self._count = workers
        self._on_done = on_done
        self._ctx = mp.get_context("spawn")
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._inflight: dict[int, Job] = {}      # submitted, not yet finished
        self._queued: dict[int, float] = {}       # id → time it went into the manager queue
        self._owned: dict[int, set[int]] = {}     # worker index → ids it has taken
        self._attempts: dict[int, int] = {}
        self._alone: set[int] = set()            # ids lost in a batch: next time alone
        self._workers: dict[int, tuple[mp.Process, object]] = {}
        self._last_death = 0.0
        self._stopping = False
        self.deaths = 0    # workers that died unexpectedly
        self.reruns = 0    # jobs run again because their worker died
        self._manager: SyncManager | None = None

    # -- life cycle --------------------------------------------------------------
    def start(self) -> None:
        self._manager = SyncManager(ctx=self._ctx)
        self._manager.start(initializer=worker.quiet_child)
        # Bounded: batches wait in our own queue (cheap) rather than in the manager.
        self._jobs = self._manager.Queue(maxsize=2 * self._count)
        for index in range(self._count):
            self._spawn(index)
        self._dispatcher = threading.Thread(target=self._dispatch, name="pool-dispatcher",
                                            daemon=True)
        self._collector = threading.Thread(target=self._collect, name="pool-collector",
                                           daemon=True)
        self._dispatcher.start()
        self._collector.start()

    def _spawn(self, index: int) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=worker.main, name=f"lestats-worker-{index}", daemon=True,
            args=(index, self._handle, self._jobs, sender, os.getpid()))
        process.start()
        sender.close()  # the child holds the only writer: EOF when it dies
        self._workers[index] = (process, receiver)
        self._owned[index] = set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers (blocking). Call after every submitted job has finished."""
        self._stopping = True
        self._incoming.put(_STOP)
        self._dispatcher.join(timeout)
        try:
            for _ in self._workers:
                self._jobs.put(None, timeout=1.0)
        except (queue.Full, OSError, EOFError):
            pass
        deadline = time.monotonic() + timeout
        for process, _ in list(self._workers.values()):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
        self._collector.join(timeout)
        if self._manager is not None:
            self._manager.shutdown()

    def pids(self) -> dict:
        manager = getattr(self._manager, "_process", None)
        return {"workers": [p.pid for p, _ in self._workers.values()],
                "manager": manager.pid if manager else None}

    # -- submission ----------------------------------------------------------------
    def submit(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._inflight[job.id] = job
                self._incoming.put(job)

    def _dispatch(self) -> None:
        while True:
            first = self._incoming.get()
            if first is _STOP:
                return
            # Batch what is waiting, but leave work for every worker.
            limit = min(MAX_BATCH, max(1, math.ceil(self._incoming.qsize() / self._count)))
            batches, batch = [], [first]
            while len(batch) < limit and first.id not in self._alone:
                try:
                    job = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    self._incoming.put(_STOP)
                    break
                if job.id in self._alone:
                    batches.append((job,))
                else:
                    batch.append(job)
            batches.insert(0, tuple(batch))
            now = time.monotonic()
            with self._lock:
                for jobs in batches:
                    for job in jobs:
                        self._queued[job.id] = now
            try:
                for jobs in batches:
                    self._jobs.put(Batch(jobs))
            except (OSError, EOFError):
                return  # the manager is gone: we are stopping

    # -- collection ----------------------------------------------------------------
    def _collect(self) -> None:
        suspects: set[int] = set()
        while not (self._stopping and not any(p.is_alive() for p, _ in self._workers.values())):
            readers = {receiver: index for index, (_, receiver) in self._workers.items()}
            sentinels = {process.sentinel: index
                         for index, (process, _) in self._workers.items()}
            for ready in wait([*readers, *sentinels], timeout=_TICK):
                if ready in readers:
                    self._receive(readers[ready])
                elif ready in sentinels:
                    self._worker_died(sentinels[ready])
            suspects = self._sweep(suspects)

    def _receive(self, index: int) -> None:
        _, receiver = self._workers[index]
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            return  # its sentinel will report the death
        self._handle_message(index, message)

    def _handle_message(self, index: int, message) -> None:
        if isinstance(message, Taken):
            with self._lock:
                for job_id in message.ids:
                    self._queued.pop(job_id, None)
                self._owned[index].update(message.ids)
        elif isinstance(message, Done):
            with self._lock:
                fresh = [o for o in message.outcomes if self._inflight.pop(o.id, None)]
                for outcome in message.outcomes:
                    self._owned[index].discard(outcome.id)
                    self._attempts.pop(outcome.id, None)
                    self._alone.discard(outcome.id)
            if fresh:
                self._on_done(fresh)

    def _worker_died(self, index: int) -> None:
        process, receiver = self._workers[index]
        process.join()
        while True:  # what it managed to send before dying still counts
            try:
                if not receiver.poll():
                    break
                self._handle_message(index, receiver.recv())
            except (EOFError, OSError):
                break
        receiver.close()
        with self._lock:
            lost = [self._inflight[i] for i in sorted(self._owned.pop(index, ()))
                    if i in self._inflight]
        self._last_death = time.monotonic()
        if self._stopping and process.exitcode == 0:
            del self._workers[index]
            return
        self.deaths += 1
        log.error("worker %d (pid %s) died with exit code %s; %d job(s) to run again",
                  index, process.pid, process.exitcode, len(lost))
        del self._workers[index]
        if not self._stopping:
            self._spawn(index)
        self._retry(lost)

    def _retry(self, jobs: list[Job]) -> None:
        again, failed = [], []
        with self._lock:
            for job in jobs:
                self._alone.add(job.id)
                if len(jobs) > 1:  # which of them killed it? run each alone to know
                    again.append(job)
                    continue
                attempts = self._attempts.get(job.id, 0) + 1
                self._attempts[job.id] = attempts
                if attempts >= MAX_ATTEMPTS:
                    self._inflight.pop(job.id, None)
                    self._attempts.pop(job.id, None)
                    self._alone.discard(job.id)
                    failed.append(Outcome(job.id, False, worker.error_body(
                        f"the job stopped {attempts} worker processes and was abandoned")))
                else:
                    again.append(job)
        self.reruns += len(again)
        for job in again:
            self._incoming.put(job)
        if failed:
            self._on_done(failed)

    def _sweep(self, suspects: set[int]) -> set[int]:
        """Find jobs a worker took from the manager queue but died before reporting.

        Such a job is neither owned nor still in the queue. It can only exist after a
        death, so look only then, and only at jobs that stay unaccounted for over two
        ticks while the queue is empty (a live worker reports within microseconds).
        Running a job twice is harmless: only the first outcome counts.
        """
        if not self._last_death or self._stopping:
            return set()
        try:
            if self._jobs.qsize() > 0:
                return set()
        except (OSError, EOFError):
            return set()
        with self._lock:
            stale = {i for i, since in self._queued.items() if since < self._last_death}
            lost = [self._inflight[i] for i in stale & suspects if i in self._inflight]
            for job in lost:
                self._queued.pop(job.id, None)
        if lost:
            log.error("%d job(s) were taken by a worker that died; running them again",
                      len(lost))
            self._retry(lost)
        if not stale:
            self._last_death = 0.0
        return stale - {job.id for job in lost}
