"""The status table, held in the parent and touched only by the event loop.

It knows every job that is running (queued or computing) and every finished job
still retained, wakes long-polling clients when their job finishes, and decides what
an id that is no longer known means: below next_id it was handed out and has since
been evicted (410), otherwise it never existed (404).
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict

RUNNING, DONE, ERROR, EVICTED, UNKNOWN = "running", "done", "error", "evicted", "unknown"


class StatusTable:
    def __init__(self, next_id: int = 1, retain: int = 100_000):
        self.next_id = next_id
        self.retain = retain
        self._running: dict[int, None] = {}
        self._finished: OrderedDict[int, bool] = OrderedDict()  # id → ok, oldest first
        self._waiters: dict[int, list[asyncio.Future]] = {}

    def new_id(self) -> int:
        job_id = self.next_id
        self.next_id += 1
        return job_id

    def add_running(self, job_id: int) -> None:
        self._running[job_id] = None

    def add_finished(self, job_id: int, ok: bool) -> None:
        self._finished[job_id] = ok

    def finish(self, job_id: int, ok: bool) -> bool:
        """Mark a running job finished; False if it was not running (a duplicate)."""
        if job_id not in self._running:
            return False
        del self._running[job_id]
        self._finished[job_id] = ok
        for waiter in self._waiters.pop(job_id, ()):
            if not waiter.done():
                waiter.set_result(None)
        return True

    def evict(self) -> list[tuple[int, bool]]:
        """Drop the oldest finished jobs beyond the retention limit."""
        evicted = []
        while len(self._finished) > self.retain:
            evicted.append(self._finished.popitem(last=False))
        return evicted

    def state(self, job_id: int) -> str:
        if job_id in self._running:
            return RUNNING
        ok = self._finished.get(job_id)
        if ok is not None:
            return DONE if ok else ERROR
        return EVICTED if 0 < job_id < self.next_id else UNKNOWN

    async def wait(self, job_id: int, timeout: float) -> None:
        """Wait until the running job finishes or the timeout passes."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(job_id, [])
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            if not waiter.done():
                waiter.cancel()
            remaining = self._waiters.get(job_id)
            if remaining is not None and waiter in remaining:
                remaining.remove(waiter)
                if not remaining:
                    del self._waiters[job_id]

    @property
    def running_count(self) -> int:
        return len(self._running)

    def listing(self) -> list[dict[str, str]]:
        ids = sorted((*self._running, *self._finished))
        return [{f"job_id_{i}": self.state(i)} for i in ids]
