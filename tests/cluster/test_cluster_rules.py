"""The cluster's rules checked on a real redis-server, driving the worker's Consumer
directly (no worker processes): poison jobs, the id counter after lost writes."""

from __future__ import annotations

import asyncio
import time

from compute.messages import Outcome
from server.cluster import broker as keys
from server.cluster.node import MAX_ATTEMPTS, Consumer
from tests.support.cluster import start_frontend

FINGERPRINT = "0123456789abcdef"


def _submit(redis, job_id_floor: int = 0) -> int:
    return redis.register_script(keys.SUBMIT)(
        keys=[keys.NEXT_ID, keys.RUNNING, keys.FINISHED, keys.stream(FINGERPRINT)],
        args=[
            "best5",
            "a question",
            "",
            FINGERPRINT,
            job_id_floor,
            100,
            keys.JOB,
            keys.years_field(None, None),
        ],
    )


def test_a_job_whose_workers_keep_going_silent_is_abandoned(broker):
    redis = broker.client()
    live = Consumer(broker.url, FINGERPRINT, "live", claim_timeout=0.001, max_results=10)
    live.ensure_group()
    job_id = _submit(redis)
    stream = keys.stream(FINGERPRINT)
    redis.xreadgroup(keys.GROUP, "dead-1", {stream: ">"}, count=1)  # delivery 1
    entry = redis.xpending_range(stream, keys.GROUP, "-", "+", 1)[0]["message_id"]
    for attempt in range(2, MAX_ATTEMPTS + 1):  # taken over by consumers that die too
        redis.xclaim(stream, keys.GROUP, f"dead-{attempt}", 0, [entry])
    time.sleep(0.05)  # idle longer than the claim timeout
    entries, abandoned = live.reap()
    assert (entries, abandoned) == ([], 1)
    assert redis.hget(keys.job_key(job_id), "state") == b"error"
    assert b"abandoned" in redis.hget(keys.job_key(job_id), "body")
    assert redis.xlen(stream) == 0 and redis.zcard(keys.RUNNING) == 0
    assert redis.smembers(keys.FAILED) == {str(job_id).encode()}


def test_a_second_run_changes_nothing(broker):
    redis = broker.client()
    consumer = Consumer(broker.url, FINGERPRINT, "w", claim_timeout=10, max_results=10)
    consumer.ensure_group()
    job_id = _submit(redis)
    entries = consumer.read()
    assert [job.id for _, job in entries] == [job_id]
    assert consumer.finish([entries[0][0]], [Outcome(job_id, True, b"first")]) == 1
    assert consumer.finish([entries[0][0]], [Outcome(job_id, True, b"second")]) == 0
    assert redis.hget(keys.job_key(job_id), "body") == b"first"


def test_ids_never_go_back_after_lost_writes(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    ids = [
        a.post(
            "/api/best5", {"question": "Percent of adults aged 18 years and older who have obesity"}
        )[1]["job_id"]
        for _ in range(10)
    ]
    redis = broker.client()
    # A failover to a replica that missed the last writes: the counter is back at 3
    # and the jobs after it are unknown. The front-end remembers what it handed out.
    redis.set(keys.NEXT_ID, 3)
    for job_id in ids[3:]:
        redis.delete(keys.job_key(job_id))
        redis.zrem(keys.RUNNING, job_id)
    status, reply = a.post(
        "/api/best5", {"question": "Percent of adults aged 18 years and older who have obesity"}
    )
    assert status == 200 and reply["job_id"] == ids[-1] + 1
    # Only the counter went back: the ids Redis still knows keep it ahead too.
    redis.set(keys.NEXT_ID, 1)
    assert _submit(redis) == ids[-1] + 2


async def test_a_long_poll_is_woken_by_the_finish_notice(broker, monkeypatch):
    """The front-end's one subscription wakes a waiting GET: with the periodic recheck
    pushed beyond the poll's 60 s, only the notice can end the poll within 30 s."""
    from server.cluster import service as cluster

    monkeypatch.setattr(cluster, "RECHECK", 120.0)
    jobs = cluster.ClusterJobService(broker.url, max_queue=100, retain=10)
    await jobs.open(FINGERPRINT)
    jobs.start(None)
    try:
        job_id = await jobs.submit("best5", "a question", None)
        poll = asyncio.create_task(jobs.lookup(job_id, 60))
        await asyncio.sleep(0.2)
        assert not poll.done()
        worker = Consumer(broker.url, FINGERPRINT, "w", claim_timeout=10, max_results=10)
        entries = worker.read()
        assert worker.finish([entries[0][0]], [Outcome(job_id, True, b'{"status": "done"}')]) == 1
        assert await asyncio.wait_for(poll, 30) == ("done", b'{"status": "done"}')
        assert jobs.running_count == 0  # the notice also settled this front-end's count
    finally:
        await jobs.close()
