"""The seam between the job service and whatever runs the jobs.

`Executor` is all the rest of the server knows: start it in the event loop, submit
jobs (never blocking), get outcomes through a callback in the event loop, stop it.
server.pool.LocalPool is the embedded implementation (worker processes on this
machine); another executor can replace it without touching compute/ or the routes.

An executor may also say whether it can run jobs now (`health()`, see `health_of`);
one without that method is taken as always ready.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from compute.messages import Job, Outcome

# Called in the event loop with (job, outcome) pairs.
OnDone = Callable[[list[tuple[Job, Outcome]]], None]


class Executor(Protocol):
    def start(self) -> None: ...
    def submit(self, jobs: Iterable[Job]) -> None: ...
    async def stop(self, timeout: float = 10.0) -> None: ...
    def pids(self) -> dict[str, Any]: ...


def health_of(executor: object) -> dict[str, Any]:
    """The executor's `health()` — a dict with at least "ready" (bool) and "reason"
    (why not ready, else None), cheap and never blocking: the event loop calls it for
    /readyz and /api/info. An executor without one (or none yet) counts as ready."""
    health = getattr(executor, "health", None)
    if health is None:
        return {"ready": True, "reason": None}
    result: dict[str, Any] = health()
    return result


def pool_unready(executor: object) -> str | None:
    """Why the executor cannot run jobs now (health_of), or None."""
    pool = health_of(executor)
    return None if pool["ready"] else f"not ready: {pool['reason']}"
