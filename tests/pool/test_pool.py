"""The pool with real worker processes: outcomes, and survival of killed workers."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal

import pytest

from compute.dataset import load_csv
from compute.messages import Job
from compute.questions import LOWER_IS_BETTER
from compute.shared import SharedDataset
from server.pool import LocalPool
from server.results import ResultFiles

QUESTIONS = LOWER_IS_BETTER


class Collected:
    def __init__(self, expected: int):
        self.outcomes, self.expected, self.event = {}, expected, asyncio.Event()

    def __call__(self, finished):
        for job, outcome in finished:
            assert outcome.id == job.id and outcome.id not in self.outcomes, "twice"
            self.outcomes[outcome.id] = outcome
        if len(self.outcomes) >= self.expected:
            self.event.set()


@pytest.fixture
async def pool_factory(demo_csv, tmp_path):
    shared = SharedDataset.create(load_csv(demo_csv))
    files = ResultFiles(str(tmp_path / "jobs"))
    files.scan()
    pools = []

    def make(expected: int, workers: int = 2, collect=Collected) -> LocalPool:
        pool = LocalPool(shared.handle, workers, files, collect(expected))
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        await pool.stop()
    shared.release()
    assert not os.path.exists(f"/dev/shm/{shared.handle.segment}")


def _jobs(count: int) -> list[Job]:
    return [Job(i, "mean_by_category", QUESTIONS[i % len(QUESTIONS)]) for i in range(1, count + 1)]


async def test_every_job_is_written_then_reported(pool_factory, tmp_path):
    pool = pool_factory(200)
    pool.submit(_jobs(200))
    await asyncio.wait_for(pool._on_done.event.wait(), 30)
    files = ResultFiles(str(tmp_path / "jobs"))
    assert files.scan() == {i: True for i in range(1, 201)}
    bodies = [json.loads(files.read(i, True)) for i in range(1, 201)]
    assert {b["status"] for b in bodies} == {"done"}
    # a body is sent once per question and worker; the rest refer to it
    sent = [o for o in pool._on_done.outcomes.values() if o.body is not None]
    assert len(QUESTIONS) <= len(sent) <= 2 * len(QUESTIONS)
    # and a body is stored once per question and worker: the other files link to it
    inodes = {os.stat(files.path(i, True)).st_ino for i in range(1, 201)}
    assert len(QUESTIONS) <= len(inodes) <= 2 * len(QUESTIONS)
    for i in range(1, 201):
        assert bodies[i - 1] == bodies[(i - 1) % len(QUESTIONS)]  # same question, same answer


async def _kill_a_busy_worker(pool: LocalPool) -> bool:
    """SIGKILL a worker while it holds jobs it has taken; False if none got busy."""
    for _ in range(2000):
        busy = [index for index, holder in pool._ledger.workers.items() if holder.owned]
        if busy:
            os.kill(pool._workers[busy[0]].process.pid, signal.SIGKILL)
            return True
        await asyncio.sleep(0.001)
    return False


async def test_killed_workers_are_replaced_and_their_jobs_rerun(pool_factory):
    pool = pool_factory(60_000)
    pool.submit(_jobs(60_000))
    killed = 0
    for _ in range(4):
        killed += await _kill_a_busy_worker(pool)
        await asyncio.sleep(0.3)  # let the replacement start and take work
    await asyncio.wait_for(pool._on_done.event.wait(), 90)
    assert all(o.ok for o in pool._on_done.outcomes.values())
    assert len(pool._on_done.outcomes) == 60_000
    alive = [pid for pid in pool.pids()["workers"] if os.path.exists(f"/proc/{pid}")]
    assert len(alive) == 2 and pool.deaths == killed >= 2 and pool.reruns >= killed
    print(f"killed {killed} busy workers, {pool.reruns} jobs run again")


class DiskFullOnce(Collected):
    """The job service's callback as it fails when the disk is full while it journals
    an eviction: the outcomes were taken, then OSError(ENOSPC) — three times."""

    failures = 0

    def __call__(self, finished):
        super().__call__(finished)
        if self.failures < 3:
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_failing_done_callback_costs_no_pipe_reader(pool_factory, caplog):
    pool = pool_factory(1000, collect=DiskFullOnce)
    for first in range(1, 1001, 100):  # many Done messages from both workers
        pool.submit(_jobs(first + 99)[first - 1 :])
        await asyncio.sleep(0.02)
    await asyncio.wait_for(pool._on_done.event.wait(), 60)
    assert pool._on_done.failures == 3 and len(pool._on_done.outcomes) == 1000
    assert all(o.ok for o in pool._on_done.outcomes.values())
    assert pool.deaths == 0 and pool.health()["ready"]
    said = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR  # once, rate-limited
