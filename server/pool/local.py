"""The embedded executor (server.executor.Executor): worker processes on this machine.

How a job travels (in the manner of CPython's concurrent/futures/process.py):

  event loop (this process)                        manager process     worker process
  ─────────────────────────                        ───────────────     ──────────────
  submit(jobs) → Ledger.pending
  _flush (once per loop turn, and when
  a Taken frees credit):
    Ledger.next_batches → Feeder.put ── "put" call ──► Queue ───get()───► main()
    (sent without waiting; the answer is read                            │ Taken(ids)
    by Feeder._answered, add_reader)                                     │
  _receive (add_reader on the pipe) ◄──────────── its own pipe ◄─────────┤
    Ledger.taken                                                         │ compute, write
                                                                         │ jobs/<id>.json
    Ledger.done → on_done(finished) ◄───────────── its own pipe ◄─────── │ Done(outcomes)
                                                                         │ (idle: Waiting)
  _worker_died (add_reader on its sentinel): Ledger.died → Ledger.retry, a replacement
  _tick (every SWEEP_SECONDS): Ledger.sweep (vanished batches), Ledger.overdue (kill),
    Feeder.count ── "qsize" call ──► its answer is the manager's pulse
  _manager_lost (its sentinel, a failed call, or no answer for job_timeout):
    kill manager and workers, Ledger.manager_lost, a thread starts a new manager,
    _use(new feeder) spawns new workers and sends every unfinished job again

Threads of control: the event loop owns the ledger, the processes, the pipes and the
connection to the manager, and never waits for the manager (server/pool/feeder.py
speaks its protocol without blocking); a thread that lives as long as the pool
starts a new manager after one died; the default executor writes the error files of
abandoned jobs and stops the manager. The rules themselves live in
server/pool/ledger.py; docs/pool.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from compute.messages import Batch, Done, Job, Outcome, Taken, Waiting
from compute.shared import SharedHandle
from server import logsetup
from server.executor import OnDone
from server.pool import worker
from server.pool.feeder import Feeder
from server.pool.ledger import SWEEP_SECONDS, Abandoned, Ledger
from server.pool.pacing import Backoff, Throttle
from server.results import ResultFiles

log = logsetup.get("pool")

# A count of the manager queue unanswered for this long: the pool is not ready.
MANAGER_PATIENCE = 5.0
# Default of the job_timeout setting (server/config.py): see docs/pool.md.
JOB_TIMEOUT = 60.0


@dataclass
class _Worker:
    process: BaseProcess
    pipe: Connection
    generation: int  # the manager it was started for
    killed: bool = False  # by the pool (overdue): do not kill again


class LocalPool:
    def __init__(
        self,
        handle: SharedHandle,
        workers: int,
        files: ResultFiles,
        on_done: OnDone,
        job_timeout: float = JOB_TIMEOUT,
    ):
        self._handle = handle
        self._size = workers
        self._files = files
        self._on_done = on_done
        self._ctx = mp.get_context("spawn")
        self._ledger = Ledger(workers, job_timeout)
        self._workers: dict[int, _Worker] = {}
        self._next_worker = 0
        self._feeder: Feeder | None = None
        self._generation = 0
        self._flushing = False
        self._stopping = False
        self._counting_since: float | None = None  # a count asked, not yet answered
        self._spawn_backoff = Backoff()
        self._restart_backoff = Backoff()
        self._spawn_later: asyncio.TimerHandle | None = None
        self._restart_later: asyncio.TimerHandle | None = None
        self._starter: threading.Thread | None = None
        self._start_requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._throttle = Throttle(log)
        self.deaths = 0  # workers that died unexpectedly
        self.timeouts = 0  # workers killed by job_timeout (held a batch, or silent)
        self.manager_restarts = 0
        self.spawn_failures = 0

    @property
    def reruns(self) -> int:
        """Jobs run again because their worker (not the manager) was lost."""
        return self._ledger.reruns

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the manager and the workers (blocking: before the server serves)."""
        self._loop = asyncio.get_running_loop()
        self._use(Feeder.start(self._ctx, self._size, self._counted, self._feeder_failed))
        self._ticker = self._loop.call_later(SWEEP_SECONDS, self._tick)

    def _use(self, feeder: Feeder) -> None:
        feeder.attach(self._loop)
        self._feeder = feeder
        self._generation += 1
        self._counting_since = None
        self._loop.add_reader(
            feeder.sentinel, self._manager_lost, feeder, "the manager process died"
        )
        self._fill()
        self._flush()

    def _fill(self) -> None:
        """Spawn workers up to the pool's size; on failure (EMFILE, ENOMEM, EAGAIN …)
        try again later, with backoff: the pool is not ready meanwhile."""
        if self._spawn_later is not None:
            self._spawn_later.cancel()  # a death while a retry waits: this is the retry
            self._spawn_later = None
        while self._feeder is not None and not self._stopping and self._live() < self._size:
            try:
                self._spawn(self._feeder)
            except OSError as exc:
                self.spawn_failures += 1
                delay = self._spawn_backoff.next()
                self._throttle.error(
                    "spawn",
                    "cannot start a worker process (%s); %d of %d running; trying again in %.1f s",
                    exc,
                    self._live(),
                    self._size,
                    delay,
                )
                self._spawn_later = self._loop.call_later(delay, self._fill)
                return
        self._spawn_backoff.reset()

    def _spawn(self, feeder: Feeder) -> None:
        index = self._next_worker
        self._next_worker += 1
        receiver, sender = self._ctx.Pipe(duplex=False)
        try:
            process = self._ctx.Process(
                target=worker.main,
                name=f"lestats-worker-{index}",
                daemon=True,
                args=(index, self._handle, feeder.jobs, sender, os.getpid(), self._files),
            )
            process.start()
        except BaseException:
            receiver.close()
            sender.close()
            raise
        sender.close()  # the child holds the only writer
        self._workers[index] = _Worker(process, receiver, self._generation)
        self._ledger.started(index, time.monotonic())
        self._loop.add_reader(receiver.fileno(), self._receive, index)
        # add_reader (libuv) makes the fd non-blocking, but Connection.recv() expects a
        # blocking fd: a message larger than the pipe buffer would fail half-read. The
        # rest of a message is always on its way, so the loop waits microseconds at most.
        os.set_blocking(receiver.fileno(), True)
        self._loop.add_reader(process.sentinel, self._worker_died, index)

    def _live(self) -> int:
        return sum(1 for w in self._workers.values() if w.generation == self._generation)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers and the manager, in bounded time even when they are stuck.
        Call after every submitted job has finished."""
        self._stopping = True
        self._ticker.cancel()
        for later in (self._spawn_later, self._restart_later):
            if later is not None:
                later.cancel()
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            self._loop.remove_reader(feeder.sentinel)
            feeder.stop_workers(len(self._workers))
        processes = [w.process for w in self._workers.values()]
        # The loop reads the manager's answers meanwhile: closing the connection before
        # the workers have their None would leave the rest of them unsent.
        await self._loop.run_in_executor(None, _join_or_kill, processes, timeout)
        for index in list(self._workers):
            self._forget(index)
        if feeder is not None:
            feeder.detach()
            await self._loop.run_in_executor(None, feeder.shutdown, 2.0)
        self._start_requests.put(False)  # after: its manager dies with it

    def pids(self) -> dict[str, Any]:
        return {
            "workers": [
                w.process.pid for w in self._workers.values() if w.generation == self._generation
            ],
            "manager": self._feeder.pid if self._feeder is not None else None,
        }

    def health(self) -> dict[str, Any]:
        """Ready or not and why (GET /readyz, /api/info), with the pool's counters."""
        live = self._live()
        waited = (
            time.monotonic() - self._counting_since if self._counting_since is not None else 0.0
        )
        reason = None
        if self._stopping:
            reason = "the worker pool is stopping"
        elif self._feeder is None:
            reason = "the pool's manager process died; a new one is starting"
        elif waited > MANAGER_PATIENCE:
            reason = f"the pool's manager process has not answered for {waited:.0f} s"
        elif live < self._size:
            reason = f"{live} of {self._size} worker processes are running"
        return {
            "ready": reason is None,
            "reason": reason,
            "workers": live,
            "size": self._size,
            "deaths": self.deaths,
            "reruns": self.reruns,
            "timeouts": self.timeouts,
            "manager_restarts": self.manager_restarts,
            "spawn_failures": self.spawn_failures,
        }

    # -- submission ------------------------------------------------------------------------
    def submit(self, jobs: Iterable[Job]) -> None:
        """Event loop only; never blocks. Jobs of one loop turn go out together."""
        self._ledger.submit(jobs)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        feeder = self._feeder
        if feeder is None or self._stopping:
            return  # a new manager is starting: _use() flushes
        for batch in self._ledger.next_batches(time.monotonic()):
            feeder.put(Batch(batch))

    # -- collection (event loop) -----------------------------------------------------------
    def _receive(self, index: int) -> None:
        # Read every message already in the pipe (a Taken and its Done often arrive
        # together), then go back to the loop. Only a failure of the pipe itself ends
        # the reading: what the messages lead to (on_done) cannot.
        found = self._workers.get(index)
        if found is not None and not self._drain(index, found.pipe):
            self._loop.remove_reader(found.pipe.fileno())  # its sentinel reports the death

    def _drain(self, index: int, pipe: Connection) -> bool:
        """Handle every message already in the pipe; False if the pipe failed."""
        while index in self._workers:
            try:
                if not pipe.poll():
                    return True
                message = pipe.recv()
            except (EOFError, OSError):
                return False
            self._handle_message(index, message)
        return True

    def _handle_message(self, index: int, message: object) -> None:
        now = time.monotonic()
        if isinstance(message, Taken):
            self._ledger.taken(index, message.ids, now)
            self._flush_soon()  # a batch left the queue: room for another
        elif isinstance(message, Done):
            finished = self._ledger.done(index, message.outcomes, now)
            if finished:
                self._deliver(finished)
        elif isinstance(message, Waiting):
            self._ledger.heard(index, now)

    def _deliver(self, finished: list[tuple[Job, Outcome]]) -> None:
        """Hand outcomes to the job service. Its failure (a full disk while it journals,
        a bug) is logged, rate-limited, and stops nothing here: the pool's pipes and
        bookkeeping do not depend on it."""
        try:
            self._on_done(finished)
        except OSError as exc:
            self._throttle.error(
                "on_done-os",
                "the job service could not record %d finished job(s): %s",
                len(finished),
                exc,
            )
        except Exception:  # noqa: BLE001 (a bug elsewhere must not stop the pool)
            self._throttle.error(
                "on_done",
                "the job service failed on %d finished job(s)",
                len(finished),
                exc_info=True,
            )

    def _worker_died(self, index: int) -> None:
        found = self._workers[index]
        found.process.join()  # its sentinel is ready: it has exited
        self._drain(index, found.pipe)  # what it sent before dying still counts
        lost = self._ledger.died(index)
        self._forget(index)
        if self._stopping or found.generation != self._generation:
            return  # stopped by us, or with its manager: nothing of it to run again
        self.deaths += 1
        log.error(
            "worker %d (pid %s) died with exit code %s; %d job(s) to run again",
            index,
            found.process.pid,
            found.process.exitcode,
            len(lost),
        )
        self._fill()
        self._retry(lost)

    def _forget(self, index: int) -> None:
        found = self._workers.pop(index, None)
        if found is None:
            return
        self._loop.remove_reader(found.pipe.fileno())
        self._loop.remove_reader(found.process.sentinel)
        found.pipe.close()

    def _retry(self, lost: list[Job]) -> None:
        abandoned = self._ledger.retry(lost)
        self._flush_soon()
        if abandoned:  # their error files are written off the loop
            future = self._loop.run_in_executor(None, self._store, abandoned)
            future.add_done_callback(lambda done: self._deliver(done.result()))

    def _store(self, abandoned: list[Abandoned]) -> list[tuple[Job, Outcome]]:
        """Executor thread: the error result of each abandoned job, on disk."""
        finished = []
        for item in abandoned:
            body = worker.error_body(
                f"the job was running in {item.attempts} worker "
                "processes that died; it was abandoned"
            )
            try:
                self._files.write(item.job.id, False, body)
                self._files.commit()
                outcome = Outcome(item.job.id, False, body)
            except OSError as exc:
                outcome = Outcome(item.job.id, False, body, str(exc), stored=False)
            finished.append((item.job, outcome))
        return finished

    # -- the pulse (event loop, every SWEEP_SECONDS) ---------------------------------------
    def _tick(self) -> None:
        self._ticker = self._loop.call_later(SWEEP_SECONDS, self._tick)
        feeder = self._feeder
        if feeder is None or self._stopping:
            return
        now = time.monotonic()
        lost = self._ledger.sweep(now)
        if lost:
            log.error("%d job(s) were taken by a worker that died; running them again", len(lost))
            self._retry(lost)
        waited = now - self._counting_since if self._counting_since is not None else 0.0
        for index in self._ledger.overdue(now, waited <= MANAGER_PATIENCE):
            self._kill_overdue(index)
        if self._counting_since is None:
            self._counting_since = now
            feeder.count(self._ledger.handed)
        elif waited > self._ledger.job_timeout:
            self._manager_lost(
                feeder, f"the manager process has not answered for {waited:.0f} s (job_timeout)"
            )

    def _counted(self, feeder: Feeder, waiting: int, upto: int) -> None:
        if feeder is not self._feeder:
            return
        self._counting_since = None
        self._ledger.counted(waiting, upto, time.monotonic())
        self._flush_soon()

    def _kill_overdue(self, index: int) -> None:
        found = self._workers[index]
        if found.killed:
            return
        found.killed = True
        self.timeouts += 1
        holder = self._ledger.workers[index]
        doing = (
            f"has held a batch of {len(holder.owned)} job(s)"
            if holder.busy_since is not None
            else "has said nothing"
        )
        log.error(
            "worker %d (pid %s) %s for more than %g s (job_timeout); killing it",
            index,
            found.process.pid,
            doing,
            self._ledger.job_timeout,
        )
        found.process.kill()  # its sentinel fires: the usual death, the usual rules

    # -- the manager -----------------------------------------------------------------------
    def _feeder_failed(self, feeder: Feeder, exc: BaseException) -> None:
        self._manager_lost(feeder, f"a call to the manager process failed ({exc!r})")

    def _manager_lost(self, feeder: Feeder, reason: str) -> None:
        """Start again with a new manager and new workers; every unfinished job is sent
        again (a job's attempts do not count this: the manager's death is not its
        fault). Results already written stay; a job that finishes twice counts once."""
        if feeder is not self._feeder or self._stopping:
            return
        log.error(
            "%s; starting a new manager and new workers; %d unfinished job(s) will run again",
            reason,
            len(self._ledger.inflight),
        )
        self._feeder = None
        self._generation += 1  # its workers' deaths are no longer the pool's losses
        self.manager_restarts += 1
        self._loop.remove_reader(feeder.sentinel)
        feeder.kill()
        if self._spawn_later is not None:
            self._spawn_later.cancel()
            self._spawn_later = None
        for found in self._workers.values():
            found.process.kill()  # their sentinels fire; their pipes are still read
        self._ledger.manager_lost()
        self._restart()

    def _restart(self) -> None:
        self._restart_later = None
        if self._starter is None:
            self._starter = threading.Thread(
                target=self._start_feeders, name="pool-manager-starter", daemon=True
            )
            self._starter.start()
        self._start_requests.put(True)

    def _start_feeders(self) -> None:
        """A thread that lives as long as the pool: starting a manager takes a process
        start and a round trip. It must not end after starting one: the manager dies
        with the thread that started it (PR_SET_PDEATHSIG, worker.quiet_child)."""
        while self._start_requests.get():
            try:
                feeder = Feeder.start(self._ctx, self._size, self._counted, self._feeder_failed)
            except Exception as exc:  # noqa: BLE001 (reported on the loop, tried again)
                self._tell(self._restart_failed, exc)
                continue
            if not self._tell(self._restarted, feeder):
                feeder.kill()

    def _tell(self, callback: Any, *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:  # the loop is closed: the server has ended
            return False

    def _restarted(self, feeder: Feeder) -> None:
        if self._stopping:
            feeder.kill()
            return
        self._restart_backoff.reset()
        log.warning(
            "a new manager process (pid %s) is running; starting %d workers", feeder.pid, self._size
        )
        self._use(feeder)

    def _restart_failed(self, exc: BaseException) -> None:
        if self._stopping:
            return
        delay = self._restart_backoff.next()
        self._throttle.error(
            "manager", "cannot start a manager process (%s); trying again in %.1f s", exc, delay
        )
        self._restart_later = self._loop.call_later(delay, self._restart)


def _join_or_kill(processes: list[BaseProcess], timeout: float) -> None:
    """Executor thread: wait for processes to exit by `timeout`, then SIGKILL the rest
    (a stopped or stuck one never exits by itself)."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5.0)
