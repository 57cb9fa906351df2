"""Backpressure and retention on the real process (docs/guarantees.md).

A flood far beyond LESTATS_MAX_QUEUE gets 503 with Retry-After for the excess and
never a hang; every accepted job still finishes. The retention limit
LESTATS_MAX_RESULTS evicts the oldest results: 410 JSON, file gone, also after a
restart.
"""

from __future__ import annotations

import asyncio
import os
import signal

from tests.load.flood import drained, flood
from tests.support.live import http, start_server
from tests.support.load import QUESTIONS, wait_until

MAX_QUEUE = 200


def test_flood_far_beyond_the_queue_bound(live_on, demo_csv):
    server = live_on(demo_csv, workers=2, env={"LESTATS_MAX_QUEUE": str(MAX_QUEUE)})
    # Workers paused: the bound is exact, whatever the machine's speed.
    workers = server.get("/api/info")[1]["pids"]["workers"]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        paused = asyncio.run(flood(server.url, 2000, 100, server.pid))
        assert server.get("/api/num_jobs")[1] == {"num_jobs": MAX_QUEUE}
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    print(f"\nworkers paused: {paused.summary()}")
    assert len(paused.accepted) == MAX_QUEUE and paused.refused == 2000 - MAX_QUEUE
    assert not paused.other and not paused.refused_without_retry_after

    # Workers running: as many as the pool keeps up with, the rest refused.
    result = asyncio.run(flood(server.url, 20_000, 200, server.pid))
    print(f"workers running: {result.summary()}")
    assert not result.other, result.other  # no hang, no error, no other status
    assert len(result.accepted) + result.refused == 20_000
    assert result.refused_without_retry_after == 0
    assert asyncio.run(drained(server.url)), "accepted jobs did not finish"
    accepted = paused.accepted + result.accepted
    assert len(set(accepted)) == len(accepted)
    states = {k: v for entry in server.get("/api/jobs")[1]["data"] for k, v in entry.items()}
    assert all(states[f"job_id_{i}"] == "done" for i in accepted)
    # A memory bound, not a timing: the queue bound keeps the parent small.
    assert result.peak_rss_kib - paused.peak_rss_before_kib < 256 * 1024


def test_evicted_results_answer_410_also_after_a_restart(tmp_path, demo_csv):
    retain = 5
    env = {"LESTATS_MAX_RESULTS": str(retain)}
    server = start_server(tmp_path, data=demo_csv, env=env)
    jobs_dir = server.state_dir / "jobs"
    try:
        ids = []
        for question in (QUESTIONS * 2)[:12]:
            job_id = server.post("/api/global_mean", {"question": question})[1]["job_id"]
            assert server.get(f"/api/get_results/{job_id}?wait=10")[1]["status"] == "done"
            ids.append(job_id)
        evicted, kept = ids[:-retain], ids[-retain:]
        _check_retention(server, evicted, kept)
        assert server.get("/api/jobs")[1]["data"] == [{f"job_id_{i}": "done"} for i in kept]
        server.stop(signal.SIGKILL)  # a crash, not a clean stop

        server = start_server(tmp_path, data=demo_csv, env=env, state_dir=server.state_dir)
        _check_retention(server, evicted, kept)
        newest = server.post("/api/best5", {"question": QUESTIONS[0]})[1]["job_id"]
        assert newest == ids[-1] + 1
        assert server.get(f"/api/get_results/{newest}?wait=10")[1]["status"] == "done"
        _check_retention(server, evicted + kept[:1], kept[1:] + [newest])
    finally:
        code = server.stop()
    assert code == 0, server.text()
    assert sorted(int(p.stem) for p in jobs_dir.glob("*.json")) == kept[1:] + [newest]


def _check_retention(server, evicted, kept):
    jobs_dir = server.state_dir / "jobs"
    for job_id in evicted:
        for form in (job_id, f"job_id_{job_id}"):
            status, body, _ = http(f"{server.url}/api/get_results/{form}")
            assert status == 410, (job_id, status, body)
            assert set(body) == {"status", "reason"} and body["status"] == "error"
    for job_id in kept:
        assert server.get(f"/api/get_results/{job_id}")[1]["status"] == "done"
    assert wait_until(lambda: not any((jobs_dir / f"{i}.json").exists() for i in evicted), 10)
