"""The pool's bookkeeping and its decisions, with no processes, threads or clock.

LocalPool (server/pool/local.py) owns the processes and the I/O; everything it must
remember about jobs and workers, and every rule it follows when something goes
wrong, is here, so each rule can be tested without starting a process
(tests/pool/test_ledger.py). Every method is called from the event loop only, and the
caller passes the time (`now`, time.monotonic()).

A job's life in the ledger:

    submit() ──► pending ──next_batches()──► queued ──taken()──► owned by a worker
                    ▲    (QUEUE_DEPTH batches                        │
                    │     per worker: the credit)                    ├─ done() ──► finished
                    │                                                │
                    └──── retry() ◄── died() / sweep() / manager_lost()

The rules (docs/pool.md "When a worker or the manager dies"):
- a job owned by a worker that died is run again; only a death in a batch of one
  counts against it (the jobs of a bigger batch are first run again alone), and after
  MAX_ATTEMPTS such deaths it is abandoned with an error (a poison job must not take
  the pool down);
- a job that left the manager queue without being reported by a live worker is found
  by the sweep (FIFO order, or an empty queue) and run again after two sweeps;
- a worker that holds a batch longer than job_timeout, or that says nothing for
  longer than job_timeout while the manager answers, is to be killed (overdue());
- when the manager dies every unfinished job is run again, and this counts against
  no job: the manager's death is not the job's fault;
- the first outcome of a job counts; a later one (of a re-run) is ignored.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from compute.messages import Job, Outcome

MAX_ATTEMPTS = 3
MAX_BATCH = 64
# Batches per worker that may wait in the manager queue (its maxsize, server/pool/feeder.py).
QUEUE_DEPTH = 2
SWEEP_SECONDS = 0.5
# A new worker imports numpy and attaches the shared memory before it can say anything.
START_SECONDS = 10.0
# An idle worker waits this long for a batch, then says Waiting (server/pool/worker.py):
# it is silent for up to that long without being stuck.
IDLE_SECONDS = 1.0

Batch = tuple[Job, ...]


@dataclass
class Holder:
    """What the ledger knows of one worker process."""

    heard: float  # the last message from it (or its start)
    busy_since: float | None = None  # when it took the batch it holds, if any
    owned: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Abandoned:
    job: Job
    attempts: int


class Ledger:
    def __init__(
        self,
        size: int,
        job_timeout: float,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        max_batch: int = MAX_BATCH,
        grace: float = SWEEP_SECONDS,
    ):
        self.size = size
        self.job_timeout = job_timeout
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.grace = grace
        self.inflight: dict[int, Job] = {}  # submitted, not yet finished
        self.pending: deque[Job] = deque()  # not yet handed to the manager queue
        self.queued: dict[int, tuple[float, int]] = {}  # id → (when, batch number)
        self.workers: dict[int, Holder] = {}
        self.attempts: dict[int, int] = {}  # deaths in a batch of one
        self.alone: set[int] = set()  # lost in a bigger batch: next time alone
        self.suspects: set[int] = set()  # unreported at the last sweep
        self.waiting_batches = 0  # in the manager queue, not yet taken
        self.handed = 0  # batches handed so far (numbers them)
        self.newest_taken = 0  # number of the newest batch taken
        self.emptied = 0  # queue seen empty after this batch
        self.last_taken = 0.0
        self.reruns = 0  # jobs run again after a loss

    # -- jobs in -------------------------------------------------------------------
    def submit(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.inflight[job.id] = job
            self.pending.append(job)

    def next_batches(self, now: float) -> list[Batch]:
        """Batches to put into the manager queue now. Jobs gather here while the workers
        are busy and go out in bigger batches (fewer manager round trips per job): a
        batch is sized to spread the jobs over the workers with no batch waiting, and at
        most QUEUE_DEPTH batches per worker wait in the queue (the credit), so a worker
        that finishes finds its next batch there. A job to be run alone goes in a batch
        of its own. Costs what it sends, not what waits (called on every Taken)."""
        room = QUEUE_DEPTH * self.size - self.waiting_batches
        if room <= 0 or not self.pending:
            return []
        free = max(1, self.size - self.waiting_batches)
        size = min(self.max_batch, max(1, math.ceil(len(self.pending) / free)))
        batches: list[Batch] = []
        gathering: list[Job] = []
        while self.pending and room > 0:
            job = self.pending.popleft()
            if job.id not in self.inflight:
                continue  # finished meanwhile (a re-run's first outcome came)
            if job.id in self.alone:
                batches.append((job,))
                room -= 1
                continue
            gathering.append(job)
            if len(gathering) == size:
                batches.append(tuple(gathering))
                gathering = []
                room -= 1
        if gathering and room > 0:
            batches.append(tuple(gathering))
        elif gathering:  # the last room went to a job run alone: these wait, in order
            self.pending.extendleft(reversed(gathering))
        for batch in batches:
            self.handed += 1
            self.waiting_batches += 1
            for job in batch:
                self.queued[job.id] = (now, self.handed)
        return batches

    # -- what workers report ---------------------------------------------------------
    def started(self, worker: int, now: float) -> None:
        self.workers[worker] = Holder(heard=now + START_SECONDS)

    def heard(self, worker: int, now: float) -> None:
        holder = self.workers.get(worker)
        if holder is not None:
            holder.heard = max(holder.heard, now)

    def taken(self, worker: int, ids: Iterable[int], now: float) -> None:
        holder = self.workers.get(worker)
        if holder is None:
            return  # a worker of a manager that died: its batch was not in this queue
        ids = set(ids)
        for job_id in ids:
            entry = self.queued.pop(job_id, None)
            if entry is not None:
                self.newest_taken = max(self.newest_taken, entry[1])
        self.waiting_batches = max(0, self.waiting_batches - 1)
        self.last_taken = now
        holder.heard = max(holder.heard, now)
        holder.busy_since = now
        holder.owned |= ids & self.inflight.keys()

    def done(
        self, worker: int, outcomes: Iterable[Outcome], now: float
    ) -> list[tuple[Job, Outcome]]:
        """The outcomes that count: the first of each job still in flight."""
        holder = self.workers.get(worker)
        if holder is not None:
            holder.heard = max(holder.heard, now)
            holder.busy_since = None
        finished = []
        for outcome in outcomes:
            if holder is not None:
                holder.owned.discard(outcome.id)
            job = self.inflight.pop(outcome.id, None)
            if job is None:
                continue  # a re-run's second outcome: the first one counted
            self.attempts.pop(outcome.id, None)
            self.alone.discard(outcome.id)
            self.suspects.discard(outcome.id)
            self.queued.pop(outcome.id, None)
            finished.append((job, outcome))
        return finished

    # -- losses and decisions ------------------------------------------------------------
    def died(self, worker: int) -> list[Job]:
        """A worker process ended: the unfinished jobs it had taken (to retry())."""
        holder = self.workers.pop(worker, None)
        if holder is None:
            return []
        return [self.inflight[i] for i in sorted(holder.owned) if i in self.inflight]

    def retry(self, lost: list[Job]) -> list[Abandoned]:
        """Run lost jobs again, first in the queue. Of a batch that died together each
        job is next run alone (which of them killed the worker?); a job that dies alone
        MAX_ATTEMPTS times is abandoned — the caller reports it as an error."""
        again, abandoned = [], []
        for job in lost:
            if len(lost) > 1:
                self.alone.add(job.id)
                again.append(job)
                continue
            attempts = self.attempts.get(job.id, 0) + 1
            if attempts < self.max_attempts:
                self.attempts[job.id] = attempts
                again.append(job)
                continue
            self.inflight.pop(job.id, None)
            self.attempts.pop(job.id, None)
            self.alone.discard(job.id)
            abandoned.append(Abandoned(job, attempts))
        self.reruns += len(again)
        self.pending.extendleft(reversed(again))
        return abandoned

    def sweep(self, now: float) -> list[Job]:
        """Jobs that left the manager queue without reaching a live worker (a worker
        that died between its get() and its Taken, or a get() still waiting in the
        manager for a worker just killed): to retry().

        The queue is FIFO, so a job queued in a batch before one a worker has taken has
        left it; and when the queue was seen empty, every job queued before has. A job
        is suspected only after `grace` seconds unreported and lost only if still
        unreported at the next sweep (a live worker reports within microseconds).
        Running a job twice is harmless: only the first outcome counts."""
        old = {i: number for i, (since, number) in self.queued.items() if since < now - self.grace}
        if not old:
            self.suspects = set()
            return []
        gone = {
            i for i, number in old.items() if number < self.newest_taken or number <= self.emptied
        }
        lost_ids = gone & self.suspects
        self.suspects = gone - lost_ids
        for job_id in lost_ids:
            self.queued.pop(job_id, None)
        return [self.inflight[i] for i in sorted(lost_ids) if i in self.inflight]

    def counted(self, waiting: int, upto: int, now: float) -> None:
        """The manager queue held `waiting` batches when asked, after the first `upto`
        batches were handed to it. An empty queue proves earlier jobs gone (sweep());
        and when no batch has been taken for a while with no credit left, a batch may
        have vanished with a dead worker: the count replaces the credit's."""
        if waiting == 0:
            self.emptied = max(self.emptied, upto)
        if self.stalled(now):
            self.waiting_batches = waiting + max(0, self.handed - upto)

    def stalled(self, now: float) -> bool:
        return (
            self.waiting_batches >= QUEUE_DEPTH * self.size
            and bool(self.pending)
            and self.last_taken < now - self.grace
        )

    def overdue(self, now: float, manager_answers: bool) -> list[int]:
        """Workers to kill: one that has held a batch longer than job_timeout, or one
        that has said nothing for longer (an idle worker says Waiting every
        IDLE_SECONDS) while the manager answers — a stopped or hung process."""
        late = []
        for worker, holder in self.workers.items():
            if holder.busy_since is not None:
                if now - holder.busy_since > self.job_timeout:
                    late.append(worker)
            elif manager_answers and now - holder.heard > self.job_timeout + IDLE_SECONDS:
                late.append(worker)
        return late

    def manager_lost(self) -> None:
        """The manager died and with it the queue: every unfinished job goes back to
        pending, without counting against it, and the workers are forgotten (they are
        killed; their jobs are already back here)."""
        self.workers.clear()
        self.queued.clear()
        self.suspects.clear()
        self.waiting_batches = 0
        self.newest_taken = self.emptied = self.handed
        self.pending = deque(sorted(self.inflight.values(), key=lambda job: job.id))
