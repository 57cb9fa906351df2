"""Faults in a cluster of real processes on loopback: a kill -9 of a worker node, of a
front-end, of redis-server itself, and a worker stopped (SIGSTOP) for longer than the
claim timeout. In every case each acknowledged job ends done with the embedded mode's
answer, and no id is handed out twice."""
from __future__ import annotations

import signal
import time

from compute.dataset import fingerprint, load_csv
from server.cluster import broker as keys
from tests.cluster.conftest import Load
from tests.support.cluster import job_mix, start_frontend, start_worker_node

STATES = ["Ohio", "National", "Guam"]


def _pending(broker, demo_csv) -> int:
    stream = keys.stream(fingerprint(load_csv(demo_csv)))
    return broker.client().xpending(stream, keys.GROUP)["pending"]


def test_worker_node_killed_during_a_load(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    doomed = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    start_worker_node(tmp_path, "w2", broker, demo_csv, workers=1)
    load = Load([a, b], job_mix(STATES), count=600).start()
    load.wait_acknowledged(150)
    doomed.kill_all()  # kill -9 of the node and its worker process
    load.join()
    assert len(load.acknowledged) >= 600
    load.check(b, expected)
    assert _pending(broker, demo_csv) == 0


def test_front_end_killed_right_after_acknowledging(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    load = Load([a], job_mix(STATES), count=120).start().join()
    assert len(load.acknowledged) >= 120
    a.stop(signal.SIGKILL)  # no worker has run any of them yet
    start_worker_node(tmp_path, "w1", broker, demo_csv, workers=2)
    load.check(b, expected)


def test_redis_killed_and_restarted_under_load(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv, workers=1)
    start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    load = Load([a, b], job_mix(STATES), count=700, seconds=120).start()
    load.wait_acknowledged(200)
    broker.kill()  # kill -9: only what the append-only file holds survives
    before = len(load.order)
    # While Redis is down: POSTs and GETs answer 503 with Retry-After, they do not hang.
    for server in (a, b):
        status, reply = server.post("/api/best5", next(job_mix(STATES))[1], timeout=10)
        assert status == 503 and "unreachable" in reply["reason"], reply
        status, reply = server.get(f"/api/get_results/{load.order[0]}", timeout=10)
        assert status == 503, reply
    time.sleep(1.0)  # the load keeps trying meanwhile
    broker.start()   # the same directory and port: it reads its append-only file
    load.join()
    assert len(load.acknowledged) >= 700
    assert any(code == 503 and retry == "1" for code, retry, _ in load.refusals)
    after = load.order[before:]
    assert after and min(after) > max(load.order[:before])
    load.check(a, expected)
    assert int(broker.client().get(keys.NEXT_ID)) >= max(load.order)
    assert _pending(broker, demo_csv) == 0


def test_a_stopped_worker_has_its_jobs_taken_over(tmp_path, broker, demo_csv, expected):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    sleeper = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    loads = []
    for _ in range(20):  # stop it while it holds jobs (it usually does under load)
        load = Load([a], job_mix(STATES), count=300).start()
        loads.append(load)
        load.wait_acknowledged(100)
        sleeper.signal_all(signal.SIGSTOP)
        load.join()
        if _pending(broker, demo_csv) > 0:
            break
        sleeper.signal_all(signal.SIGCONT)
    held = _pending(broker, demo_csv)
    assert held > 0, "the worker never held a job when it was stopped"
    start_worker_node(tmp_path, "w2", broker, demo_csv, workers=1)
    for load in loads:  # done while the first worker still sleeps
        load.check(a, expected)
    assert sleeper.process.poll() is None
    assert _pending(broker, demo_csv) == 0
    sleeper.signal_all(signal.SIGCONT)  # it wakes up and finishes a batch already done
    more = Load([a], job_mix(STATES), count=100).start().join()
    more.check(a, expected)
    for load in loads:
        load.check(a, expected)
    assert sleeper.stop() == 0, sleeper.text()  # SIGTERM: finish the batch, exit 0
    assert _pending(broker, demo_csv) == 0
