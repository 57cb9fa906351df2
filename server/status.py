"""The status table, held in the parent and touched only by the event loop.

It knows every job that is running (queued or computing) and every finished job
still retained, wakes long-polling clients when their job finishes, and decides what
an id that is no longer known means: below next_id it was handed out and has since
been evicted (410), otherwise it never existed (404).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from collections.abc import Iterator

RUNNING, DONE, ERROR, EVICTED, UNKNOWN = "running", "done", "error", "evicted", "unknown"


class StatusTable:
    def __init__(self, next_id: int = 1, retain: int = 100_000):
        self.next_id = next_id
        self.retain = retain
        self._running: dict[int, None] = {}
        self._finished: OrderedDict[int, bool] = OrderedDict()  # id → ok, oldest first
        self._waiters: dict[int, list[asyncio.Future]] = {}
        # Every known id below _order_end, ascending, for listings (see _ordered).
        self._order: list[int] | None = None
        self._order_end = 0

    def new_id(self) -> int:
        job_id = self.next_id
        self.next_id += 1
        return job_id

    def add_running(self, job_id: int) -> None:
        self._running[job_id] = None
        self._unordered(job_id)

    def add_finished(self, job_id: int, ok: bool) -> None:
        self._finished[job_id] = ok
        self._unordered(job_id)

    def _unordered(self, job_id: int) -> None:
        if job_id < self._order_end:  # only at start-up (recovery): ids come in order
            self._order = None

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

    def entries(self, after: int = 0) -> Iterator[tuple[int, str]]:
        """(id, state) of every running or retained job with an id above `after`,
        ascending, read lazily: the caller may pause between items (GET /api/jobs
        does, so a listing of 100,000 jobs never holds the event loop). What changes
        meanwhile: a job that finishes is listed with its new state, one evicted
        is left out, and ids handed out after the call began are not listed."""
        order, end = self._ordered(), self.next_id
        running, finished = self._running, self._finished
        for index in range(bisect.bisect_right(order, after), len(order)):
            job_id = order[index]
            if job_id >= end:
                return
            if job_id in running:
                yield job_id, RUNNING
            else:
                ok = finished.get(job_id)
                if ok is not None:
                    yield job_id, DONE if ok else ERROR

    def _ordered(self) -> list[int]:
        """The known ids, ascending, kept between listings: new ids are appended (ids
        are handed out in order), and ids evicted since are only skipped, until they
        are half the list and it is rebuilt (sorting the mostly ordered ids takes
        ~2 ms per 100,000). A listing in progress keeps the list it began with."""
        known = len(self._running) + len(self._finished)
        if self._order is None or len(self._order) > 2 * known + 1024:
            self._order = sorted((*self._running, *self._finished))
        elif self._order_end < self.next_id:
            self._order.extend(
                i
                for i in range(self._order_end, self.next_id)
                if i in self._running or i in self._finished
            )
        self._order_end = self.next_id
        return self._order
