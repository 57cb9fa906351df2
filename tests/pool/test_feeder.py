"""The event loop's connection to the manager (server/pool/feeder.py), against a real
manager process: answers reach their callers in order, and a stopped or dead manager
never makes the loop wait — it is reported, and the pool replaces it."""

from __future__ import annotations

import asyncio
import faulthandler
import multiprocessing as mp
import os
import signal

import pytest

from compute.messages import Batch, Job
from server.pool.feeder import Feeder


class Told:
    def __init__(self):
        self.counts: list[tuple[int, int]] = []
        self.failures: list[BaseException] = []
        self.event = asyncio.Event()

    def counted(self, feeder, waiting: int, upto: int) -> None:
        self.counts.append((waiting, upto))
        self.event.set()

    def failed(self, feeder, exc: BaseException) -> None:
        self.failures.append(exc)
        self.event.set()


@pytest.fixture
async def feeder_and_told():
    told = Told()
    loop = asyncio.get_running_loop()
    feeder = await loop.run_in_executor(
        None, Feeder.start, mp.get_context("spawn"), 1, told.counted, told.failed
    )
    feeder.attach(loop)
    yield feeder, told
    feeder.kill()


def _batch(first: int, count: int, question: str = "q") -> Batch:
    return Batch(tuple(Job(i, "best5", question) for i in range(first, first + count)))


async def test_puts_and_counts_are_answered_in_order(feeder_and_told):
    feeder, told = feeder_and_told
    feeder.put(_batch(1, 3))
    feeder.count(1)
    feeder.put(_batch(4, 2))
    feeder.count(2)
    while len(told.counts) < 2:
        told.event.clear()
        await asyncio.wait_for(told.event.wait(), 30)
    assert told.counts == [(1, 1), (2, 2)]  # the queue's size after each put
    assert told.failures == []
    taken = feeder.jobs.get(timeout=5)  # a worker's ordinary proxy sees the batch
    assert [job.id for job in taken.jobs] == [1, 2, 3]


async def test_a_stopped_manager_never_makes_the_loop_wait(feeder_and_told):
    feeder, told = feeder_and_told
    os.kill(feeder.pid, signal.SIGSTOP)
    # A blocking send would hang here for ever: fail loudly instead.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        big = _batch(1, 20, "q" * 2000)  # ~40 KB a put, never answered
        for _ in range(100):
            feeder.put(big)
        feeder.count(1)  # after the failure: dropped, not sent
    finally:
        faulthandler.cancel_dump_traceback_later()
        os.kill(feeder.pid, signal.SIGCONT)
    await asyncio.wait_for(told.event.wait(), 30)  # told on the next loop turn
    assert len(told.failures) == 1, told.failures
    assert "unanswered" in str(told.failures[0]) or isinstance(told.failures[0], BlockingIOError), (
        told.failures
    )
    assert told.counts == []


async def test_a_dead_manager_is_reported(feeder_and_told):
    feeder, told = feeder_and_told
    os.kill(feeder.pid, signal.SIGKILL)
    await asyncio.wait_for(told.event.wait(), 30)  # the connection ends
    assert len(told.failures) == 1 and told.counts == []
    feeder.put(_batch(1, 1))  # closed: ignored, no second report
    await asyncio.sleep(0.05)
    assert len(told.failures) == 1
