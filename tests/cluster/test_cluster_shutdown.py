"""Graceful shutdown in the cluster: a front-end stops taking jobs, waits until every job
it acknowledged has finished (whichever worker runs it), and exits 0; a worker node
stopped with SIGTERM finishes its batch and exits 0."""
from __future__ import annotations

import time

from tests.cluster.conftest import Load, wait_all_done
from tests.support.cluster import job_mix, start_frontend, start_worker_node


def test_front_end_drains_what_it_acknowledged(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    mix = job_mix(["Ohio", "National"])
    load = Load([a], mix, count=40).start().join()  # no worker yet: all still running
    assert a.get("/api/graceful_shutdown") == (200, {"status": "running"})
    status, reply = a.post("/api/best5", next(mix)[1])
    assert status == 503 and reply["reason"] == "shutting down"
    assert b.post("/api/best5", next(mix)[1])[0] == 200  # the other front-end still takes
    time.sleep(0.5)
    assert a.process.poll() is None  # it waits for its jobs
    node = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=2)
    assert a.process.wait(60) == 0, a.text()
    load.check(b, expected)
    assert node.stop() == 0, node.text()


def test_front_end_with_its_own_workers_drains_them(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv, workers=2)
    load = Load([a], job_mix(["Ohio"]), count=200).start().join()
    assert a.stop() == 0, a.text()  # SIGTERM: its workers finish its jobs first
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    results = wait_all_done(b, sorted(load.acknowledged), timeout=10)
    assert all(results[i] == expected(*load.acknowledged[i]) for i in results)
