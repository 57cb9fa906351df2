"""Graceful shutdown in the cluster: a front-end stops taking jobs, waits until every job
it acknowledged has finished (whichever worker runs it), and exits 0; a worker node
stopped with SIGTERM finishes its batch and exits 0."""

from __future__ import annotations

import time

from tests.cluster.conftest import check_all, finish_load
from tests.support.cluster import start_frontend, start_worker_node
from tests.support.load import ClientLoad, JobMix


def test_front_end_drains_what_it_acknowledged(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    mix = JobMix(demo_csv, 6)
    load = finish_load(ClientLoad(a.url, mix, max_jobs=40).start(), 40)  # no worker yet
    assert a.get("/api/graceful_shutdown") == (200, {"status": "running"})
    question = {"question": mix.pick()[1]["question"]}
    status, reply = a.post("/api/best5", question)
    assert status == 503 and reply["reason"] == "shutting down"
    assert b.post("/api/best5", question)[0] == 200  # the other front-end still takes
    time.sleep(0.5)
    assert a.process.poll() is None  # it waits for its jobs
    node = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=2)
    assert a.process.wait(60) == 0, a.text()
    check_all(load, b)
    assert node.stop() == 0, node.text()


def test_front_end_with_its_own_workers_drains_them(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv, workers=2)
    load = finish_load(ClientLoad(a.url, JobMix(demo_csv, 7), max_jobs=200).start(), 200)
    assert a.stop() == 0, a.text()  # SIGTERM: its workers finish its jobs first
    b = start_frontend(tmp_path, "b", broker, demo_csv)  # no workers: all were done
    check_all(load, b, timeout=10)


def test_a_front_end_draining_without_redis_gives_up_and_exits_1(tmp_path, broker, demo_csv):
    """SIGTERM while a job it acknowledged can never be seen finishing (Redis is gone):
    /readyz says why, and after job_timeout of that the front-end exits 1 (a supervisor
    starts it again; the job itself stays in Redis) instead of waiting forever."""
    a = start_frontend(tmp_path, "a", broker, demo_csv, env={"LESTATS_JOB_TIMEOUT": "2"})
    mix = JobMix(demo_csv, 8)
    assert a.post("/api/best5", {"question": mix.pick()[1]["question"]})[0] == 200  # no worker
    broker.kill()
    status, reply = a.get("/readyz")
    deadline = time.monotonic() + 20
    while status == 200 and time.monotonic() < deadline:  # noticed within a few seconds
        time.sleep(0.2)
        status, reply = a.get("/readyz")
    assert status == 503 and "unreachable" in reply["reason"], reply
    assert a.stop(timeout=60) == 1, a.text()
    assert "stopping with 1 unfinished job(s)" in a.text(), a.text()
