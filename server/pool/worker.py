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
from typing import Protocol

from compute.messages import Batch, Done, Job, Outcome, Taken, job_key
from compute.shared import SharedDataset, SharedHandle
from compute.stats import answer

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
    """Children ignore Ctrl-C and SIGTERM: a terminal (or systemd, or `timeout`) sends
    them to the whole process group, and the parent must be the one to decide how a
    shutdown drains. Children still die with the parent (below)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()


def error_body(reason: str) -> bytes:
    return json.dumps({"status": "error", "reason": reason}).encode()


class ResultSink(Protocol):
    """Where a worker puts each outcome before reporting it (server.results.ResultFiles:
    one file per job id); it must be durable before Done."""

    def write(self, job_id: int, ok: bool, body: bytes) -> None: ...

    def commit(self) -> None:
        """Everything written so far is durable (called once per batch)."""


class JobRunner:
    """Answers jobs against one dataset, memoising bodies: answers never change while
    the dataset is loaded, and popular questions are asked again and again."""

    def __init__(self, shared: SharedDataset):
        self._shared = shared  # owns the mapping: the arrays die with it
        self.dataset = shared.dataset
        self._cache: dict[tuple, bytes] = {}
        self._sent: set[tuple] = set()

    def run(self, job: Job) -> Outcome:
        key = job_key(job)
        body = self._cache.get(key)
        if body is not None:
            return Outcome(job.id, True, body)
        try:
            data = answer(self.dataset, job.endpoint, job.question, job.state,
                          job.year_start, job.year_end)
        except Exception:
            return Outcome(job.id, False, error_body("the statistic could not be computed"),
                           traceback.format_exc())
        body = b'{"status": "done", "data": ' + data + b"}"
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
            self._sent.clear()
        self._cache[key] = body
        return Outcome(job.id, True, body)

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


def _persist(sink: ResultSink, outcome: Outcome) -> Outcome:
    try:
        sink.write(outcome.id, outcome.ok, outcome.body)
        return outcome
    except OSError as exc:
        return Outcome(outcome.id, False, error_body("the result could not be stored"),
                       f"writing the result failed: {exc}", stored=False)


def main(index: int, handle: SharedHandle, jobs, conn, parent_pid: int,
         sink: ResultSink) -> None:
    """Entry point of a worker process (index names it in the parent's bookkeeping)."""
    quiet_child()
    runner = JobRunner(SharedDataset.attach(handle))
    while True:
        try:
            batch: Batch | None = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        except (EOFError, OSError):
            return  # the manager is gone: the server is stopping
        if batch is None:
            return
        try:
            conn.send(Taken(index, tuple(job.id for job in batch.jobs)))
            outcomes = [_persist(sink, runner.run(job)) for job in batch.jobs]
            sink.commit()
            conn.send(Done(index, tuple(runner.report(job, outcome)
                                        for job, outcome in zip(batch.jobs, outcomes))))
        except (BrokenPipeError, EOFError, OSError):
            return
