"""The typed messages that cross the process boundary (and nothing else does).

Parent → workers, through the manager queue: a Batch of Jobs (None asks a worker to
stop). Worker → parent, through the worker's own pipe: Taken (so the parent knows
which jobs die with a worker) and then Done with one Outcome per job; Waiting while
it is idle (so a stopped worker is told from an idle one).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T")


def _plain_pickle(cls: type[T]) -> type[T]:
    """Pickle as (class, field values): frozen slots dataclasses otherwise pickle
    through Python-level __getstate__/__setstate__, which was visible in profiles of
    the dispatcher and the workers (3x slower per message)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    values = operator.attrgetter(*names)
    one = len(names) == 1

    def reduce(self: T) -> tuple[type[T], tuple[Any, ...]]:
        return cls, (values(self),) if one else values(self)

    cls.__reduce__ = reduce  # type: ignore[assignment,method-assign]
    return cls


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Job:
    id: int
    endpoint: str
    question: str
    state: str | None = None
    year_start: int | None = None  # an inclusive year range (docs/analytics.md)
    year_end: int | None = None


def job_key(job: Job) -> tuple[str, str, str | None, int | None, int | None]:
    """What a job's answer depends on: jobs with equal keys have equal answers."""
    return (job.endpoint, job.question, job.state, job.year_start, job.year_end)


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Batch:
    jobs: tuple[Job, ...]


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Outcome:
    """`body` is the complete JSON body get_results answers with, encoded once; None
    when the worker has already sent the same body for the same question (see
    server.pool.worker.JobRunner.report). `stored` is False when it could not be persisted."""

    id: int
    ok: bool
    body: bytes | None
    detail: str = ""  # traceback text for the parent's log when not ok; never sent to clients
    stored: bool = True


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Taken:
    worker: int
    ids: tuple[int, ...]


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Done:
    worker: int
    outcomes: tuple[Outcome, ...]


@_plain_pickle
@dataclass(frozen=True, slots=True)
class Waiting:
    """An idle worker is alive: sent each time its wait for a batch times out, so the
    parent can tell a stopped or hung worker from an idle one."""

    worker: int
