"""Crash safety of the workers (docs/guarantees.md).

Worker processes of the real server (pids from /api/info) are killed with SIGKILL
again and again while clients post and poll. Every job must still end `done` with the
reference answer, the pool must be back to its full size with live processes, and the
parent must keep answering all along.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time

from tests.support.live import http
from tests.support.load import STATES, ClientLoad, JobMix, alive, log_text, wait_until

WORKERS = 2
KILLS = 10
# Memoised answers make jobs fast; the by-category ones are the slowest, and a mix
# over many (question, state) keys keeps a replacement worker's empty cache busy.
ENDPOINTS = (
    "mean_by_category",
    "state_mean_by_category",
    "states_mean",
    "diff_from_mean",
    "state_mean",
)


def test_killed_workers_are_replaced_and_no_job_is_lost(live_on, demo_csv):
    rng = random.Random(7)
    mix = JobMix(demo_csv, 7, endpoints=ENDPOINTS)
    server = live_on(demo_csv, workers=WORKERS)
    load = ClientLoad(server.url, mix, clients=4, seed=7, max_jobs=2500).start()
    killed = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.1, 0.3))
        status, info, _ = http(f"{server.url}/api/info", timeout=10)  # never hangs
        assert status == 200
        victims = [p for p in info["pids"]["workers"] if alive(p) and p not in killed]
        if not victims:
            continue  # both just killed (dying takes a moment) and not yet replaced
        victim = rng.choice(victims)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
    load.stop(timeout=60)
    assert load.unreachable == 0 and load.refused == 0

    for job_id, (endpoint, body) in load.acknowledged.items():
        status, result, _ = http(f"{server.url}/api/get_results/{job_id}?wait=20", timeout=30)
        assert status == 200, (job_id, result)
        mix.check(endpoint, body, result)

    def full_pool():
        workers = http(f"{server.url}/api/info")[1]["pids"]["workers"]
        return (
            len(workers) == WORKERS
            and all(alive(p) for p in workers)
            and not set(workers) & set(killed)
        )

    assert wait_until(full_pool, 20), http(f"{server.url}/api/info")[1]["pids"]
    assert not any(alive(p) for p in killed)
    log = log_text(server.log_file)  # the load's access log rotates it
    deaths = re.findall(r"died with exit code -9; (\d+) job\(s\) to run again", log)
    assert len(deaths) == len(killed) >= KILLS // 2
    swept = re.findall(r"(\d+) job\(s\) were taken by a worker that died", log)
    print(
        f"\n{len(killed)} workers killed, {len(load.acknowledged)} jobs, "
        f"{sum(map(int, deaths + swept))} run again, all done with the reference "
        f"answer; pool back to {WORKERS} live workers"
    )


async def test_a_poison_job_is_abandoned_alone(demo_csv, tmp_path):
    """A job that kills every worker it runs in ends with an error after
    MAX_ATTEMPTS deaths — and the other jobs of its batch, which died with it through
    no fault of their own, still end done (they are run again one by one first)."""
    from compute.dataset import load_csv
    from compute.messages import Job
    from compute.shared import SharedDataset
    from server.pool import MAX_ATTEMPTS, LocalPool
    from server.results import ResultFiles
    from tests.support.load import QUESTIONS
    from tests.support.poison import Poison

    outcomes, finished = {}, asyncio.Event()
    count, poison = 3000, 1500

    def on_done(batch):
        for job, outcome in batch:
            assert outcome.id == job.id and outcome.id not in outcomes
            outcomes[outcome.id] = outcome
        if len(outcomes) == count:
            finished.set()

    shared = SharedDataset.create(load_csv(demo_csv))
    files = ResultFiles(str(tmp_path / "jobs"))
    files.scan()
    pool = LocalPool(shared.handle, WORKERS, files, on_done)
    pool.start()
    try:
        pool.submit(
            [
                Job(
                    i,
                    "state_mean",
                    Poison(QUESTIONS[0]) if i == poison else QUESTIONS[i % len(QUESTIONS)],
                    STATES[i % len(STATES)],
                )
                for i in range(1, count + 1)
            ]
        )
        await asyncio.wait_for(finished.wait(), 60)
        deaths = pool.deaths
    finally:
        await pool.stop()
        shared.release()
    assert not outcomes[poison].ok and b"abandoned" in outcomes[poison].body
    innocent = [o for i, o in outcomes.items() if i != poison and not o.ok]
    assert innocent == [], f"{len(innocent)} innocent jobs abandoned with the poison"
    # one death in its first (shared) batch, then MAX_ATTEMPTS alone
    assert MAX_ATTEMPTS <= deaths <= MAX_ATTEMPTS + 1
    print(
        f"\npoison job abandoned after {deaths} worker deaths; "
        f"{pool.reruns} re-runs, all {count - 1} others done"
    )
