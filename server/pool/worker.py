"""The worker process: attach to the shared dataset, then answer batches of jobs.

It takes batches from the manager queue, writes each result file (server.results)
and reports on its own pipe; compute/ only supplies the dataset and the statistics."""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any, Protocol

from compute.messages import Batch, Done, Job, Outcome, Taken, Waiting, job_key
from compute.shared import SharedDataset, SharedHandle
from compute.stats import answer
from server.pool.ledger import IDLE_SECONDS

_PR_SET_PDEATHSIG = 1
_CACHE_LIMIT = 4096


def die_with_parent() -> None:
    """Make the kernel kill this process when its parent dies (even by kill -9), so no
    worker outlives the server and keeps its shared memory mapped. Linux only; elsewhere
    the getppid() check in the loop is the fallback."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def quiet_child() -> None:
    """Children ignore the signals the parent drains on (Ctrl-C, SIGTERM, and SIGHUP /
    SIGQUIT from a closing terminal): a terminal (or systemd, or `timeout`) sends them
    to the whole process group, and the parent must be the one to decide how a
    shutdown drains. Children still die with the parent (below)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    die_with_parent()


def error_body(reason: str) -> bytes:
    return json.dumps({"status": "error", "reason": reason}).encode()


class ResultSink(Protocol):
    """Where a worker puts each outcome before reporting it (server.results.ResultFiles:
    one file per job id); it must be durable before Done."""

    def write(self, job_id: int, ok: bool, body: bytes) -> None:
        """Store one job's complete get_results body."""

    def link(self, source_id: int, job_id: int) -> bool:
        """Store job_id's answer as the one stored for source_id (the same body), or
        False: then write() it."""

    def commit(self) -> None:
        """Everything written so far is durable (called once per batch)."""


class JobRunner:
    """Answers jobs against one dataset, memoising bodies: answers never change while
    the dataset is loaded, and popular questions are asked again and again."""

    def __init__(self, shared: SharedDataset):
        assert shared.dataset is not None  # attached, not released
        self._shared = shared  # owns the mapping: the arrays die with it
        self.dataset = shared.dataset
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._sent: set[tuple[Any, ...]] = set()
        # A job whose result file holds the body of this question: later jobs asking
        # it get a hard link to that file instead of a new one (ResultSink.link).
        self._stored: dict[tuple[Any, ...], int] = {}

    def run(self, job: Job) -> Outcome:
        key = job_key(job)
        body = self._cache.get(key)
        if body is not None:
            return Outcome(job.id, True, body)
        try:
            data = answer(
                self.dataset, job.endpoint, job.question, job.state, job.year_start, job.year_end
            )
        except Exception:  # noqa: BLE001 (any failure of one job is that job's error)
            return Outcome(
                job.id,
                False,
                error_body("the statistic could not be computed"),
                traceback.format_exc(),
            )
        body = b'{"status": "done", "data": ' + data + b"}"
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
            self._sent.clear()
            self._stored.clear()
        self._cache[key] = body
        return Outcome(job.id, True, body)

    def persist(self, sink: ResultSink, job: Job, outcome: Outcome) -> Outcome:
        """Store the outcome's body as the job's result (before it is reported): a link
        to the file of an earlier job with the same answer where there is one, else a
        new file. A failure of the storage is the job's "not stored" outcome."""
        assert outcome.body is not None  # run() always gives one; report() may drop it
        key = job_key(job) if outcome.ok else None
        try:
            source = self._stored.get(key) if key is not None else None
            if source is None or not sink.link(source, outcome.id):
                sink.write(outcome.id, outcome.ok, outcome.body)
                if key is not None and key in self._cache:
                    self._stored[key] = outcome.id
            return outcome
        except OSError as exc:
            return _unstored(outcome, exc)

    def report(self, job: Job, outcome: Outcome) -> Outcome:
        """The outcome as sent to the parent: a body this worker has sent before for the
        same question is left out (the parent keeps it by job_key; the file has it)."""
        if not outcome.ok:
            return outcome
        key = job_key(job)
        if key in self._sent:
            return Outcome(outcome.id, True, None)
        self._sent.add(key)
        return outcome


def _unstored(outcome: Outcome, exc: OSError) -> Outcome:
    """Not an answer: the parent runs the job again once the storage works."""
    return Outcome(
        outcome.id,
        False,
        error_body("the result could not be stored"),
        f"writing the result failed: {exc}",
        stored=False,
    )


def main(
    index: int,
    handle: SharedHandle,
    jobs: queue.Queue[Batch | None],
    conn: Connection,
    parent_pid: int,
    sink: ResultSink,
) -> None:
    """Entry point of a worker process (index names it in the parent's bookkeeping)."""
    quiet_child()
    runner = JobRunner(SharedDataset.attach(handle))
    while True:
        try:
            batch = jobs.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            try:
                conn.send(Waiting(index))
            except OSError:
                return
            continue
        except (EOFError, OSError):
            return  # the manager is gone: the server is stopping
        if batch is None:
            return
        try:
            conn.send(Taken(index, tuple(job.id for job in batch.jobs)))
            outcomes = [runner.persist(sink, job, runner.run(job)) for job in batch.jobs]
            try:
                sink.commit()
            except OSError as exc:  # the files may not survive a power loss
                outcomes = [_unstored(outcome, exc) for outcome in outcomes]
            conn.send(
                Done(
                    index,
                    tuple(
                        runner.report(job, outcome) for job, outcome in zip(batch.jobs, outcomes)
                    ),
                )
            )
        except (BrokenPipeError, EOFError, OSError):
            return
