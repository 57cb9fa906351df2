"""The pool with real worker processes: outcomes, and survival of killed workers."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from compute.dataset import load_csv
from compute.messages import Job
from compute.questions import LOWER_IS_BETTER
from compute.shared import SharedDataset
from server.pool import LocalPool

QUESTION = LOWER_IS_BETTER[0]


class Collected:
    def __init__(self):
        self.outcomes, self.lock, self.event = {}, threading.Lock(), threading.Event()
        self.expected = 0

    def __call__(self, outcomes):
        with self.lock:
            for outcome in outcomes:
                assert outcome.id not in self.outcomes, "an outcome delivered twice"
                self.outcomes[outcome.id] = outcome
            if len(self.outcomes) >= self.expected:
                self.event.set()


@pytest.fixture
def pool(demo_csv):
    shared = SharedDataset.create(load_csv(demo_csv))
    collected = Collected()
    pool = LocalPool(shared.handle, 2, collected)
    pool.start()
    pool.collected = collected
    yield pool
    pool.stop()
    shared.release()
    assert not os.path.exists(f"/dev/shm/{shared.handle.segment}")


def test_outcomes_are_complete_bodies(pool):
    pool.collected.expected = 200
    pool.submit(Job(i, "states_mean", QUESTION) for i in range(1, 201))
    assert pool.collected.event.wait(30)
    bodies = {json.loads(o.body)["status"] for o in pool.collected.outcomes.values()}
    assert bodies == {"done"}


def test_killed_workers_are_replaced_and_their_jobs_rerun(pool):
    pool.collected.expected = 30000
    pool.submit(Job(i, "mean_by_category", QUESTION) for i in range(1, 30001))
    killed = 0
    for _ in range(5):
        time.sleep(0.04)
        for pid in pool.pids()["workers"]:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    started = time.monotonic()
    assert pool.collected.event.wait(60), f"{len(pool.collected.outcomes)} of 30000"
    assert all(o.ok for o in pool.collected.outcomes.values())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(pool.pids()["workers"]) < 2:
        time.sleep(0.05)
    alive = [pid for pid in pool.pids()["workers"] if os.path.exists(f"/proc/{pid}")]
    assert len(alive) == 2 and killed >= 2 and pool.deaths >= 2
    print(f"killed {killed} workers, {pool.reruns} jobs run again, "
          f"{time.monotonic() - started:.2f} s")
