"""Faults in a cluster of real processes on loopback: a kill -9 of a worker node, of a
front-end, of redis-server itself, and a worker stopped (SIGSTOP) for longer than the
claim timeout. In every case each acknowledged job ends done with the reference
answer, and no id is handed out twice (ClientLoad fails on a duplicate)."""

from __future__ import annotations

import os
import signal
import time

from compute.dataset import load_csv
from server.cluster import broker as keys
from tests.cluster.conftest import check_all, finish_load
from tests.support.cluster import start_frontend, start_worker_node
from tests.support.load import ClientLoad, JobMix, wait_until


def _pending(broker, demo_csv) -> int:
    stream = keys.stream(load_csv(demo_csv).fingerprint)
    return broker.client().xpending(stream, keys.GROUP)["pending"]


def _semaphores() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("sem.")}


def test_worker_node_killed_during_a_load(tmp_path, broker, demo_csv):
    semaphores = _semaphores()
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    doomed = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    start_worker_node(tmp_path, "w2", broker, demo_csv, workers=1)
    load = ClientLoad([a.url, b.url], JobMix(demo_csv, 1), max_jobs=600).start()
    assert wait_until(lambda: len(load.acknowledged) >= 150, 60)
    doomed.kill_all()  # kill -9 of the node and its worker process
    finish_load(load, 600)
    check_all(load, b)
    assert _pending(broker, demo_csv) == 0
    # Nothing of the killed node is left in /dev/shm: its stop signal is a pipe, not
    # a multiprocessing Event (named semaphores that only its killed resource tracker
    # would have removed).
    assert _semaphores() - semaphores == set()


def test_front_end_killed_right_after_acknowledging(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv)
    load = finish_load(ClientLoad(a.url, JobMix(demo_csv, 2), max_jobs=120).start(), 120)
    a.stop(signal.SIGKILL)  # no worker has run any of them yet
    start_worker_node(tmp_path, "w1", broker, demo_csv, workers=2)
    check_all(load, b)


def test_redis_killed_and_restarted_under_load(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    b = start_frontend(tmp_path, "b", broker, demo_csv, workers=1)
    start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    mix = JobMix(demo_csv, 3)
    load = ClientLoad([a.url, b.url], mix, max_jobs=700).start()
    assert wait_until(lambda: len(load.acknowledged) >= 200, 60)
    broker.kill()  # kill -9: only what the append-only file holds survives
    # While Redis is down: POSTs and GETs answer 503 with Retry-After, they do not hang
    # (the request's own timeout would fail the test).
    for server in (a, b):
        status, reply = server.post(
            "/api/best5", {"question": mix.pick()[1]["question"]}, timeout=10
        )
        assert status == 503 and "unreachable" in reply["reason"], reply
        status, reply = server.get(f"/api/get_results/{min(load.ids())}", timeout=10)
        assert status == 503, reply
    time.sleep(1.0)  # the clients keep trying meanwhile
    before = load.ids()
    broker.start()  # the same directory and port: it reads its append-only file
    finish_load(load, 700)
    assert load.retry_after == {"1"}  # every refusal said when to come back
    after = load.ids() - before
    assert after and min(after) > max(before)
    check_all(load, a)
    assert int(broker.client().get(keys.NEXT_ID)) >= max(load.acknowledged)
    assert _pending(broker, demo_csv) == 0


def test_a_stopped_worker_has_its_jobs_taken_over(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv)
    sleeper = start_worker_node(tmp_path, "w1", broker, demo_csv, workers=1)
    mix, loads = JobMix(demo_csv, 4), []
    for attempt in range(20):  # stop it while it holds jobs (it usually does under load)
        load = ClientLoad(a.url, mix, seed=attempt, max_jobs=300).start()
        loads.append(load)
        assert wait_until(lambda: len(load.acknowledged) >= 100, 60)  # noqa: B023
        sleeper.signal_all(signal.SIGSTOP)
        finish_load(load, 300)
        if _pending(broker, demo_csv) > 0:
            break
        sleeper.signal_all(signal.SIGCONT)
    assert _pending(broker, demo_csv) > 0, "the worker never held a job when stopped"
    start_worker_node(tmp_path, "w2", broker, demo_csv, workers=1)
    for load in loads:  # all done while the first worker still sleeps
        check_all(load, a)
    assert sleeper.process.poll() is None
    assert _pending(broker, demo_csv) == 0
    sleeper.signal_all(signal.SIGCONT)  # it wakes up and finishes a batch already done
    more = finish_load(ClientLoad(a.url, mix, seed=99, max_jobs=100).start(), 100)
    for load in (*loads, more):
        check_all(load, a)
    assert sleeper.stop() == 0, sleeper.text()  # SIGTERM: finish the batch, exit 0
    assert _pending(broker, demo_csv) == 0


def test_a_front_ends_own_worker_killed_is_replaced(tmp_path, broker, demo_csv):
    a = start_frontend(tmp_path, "a", broker, demo_csv, workers=1)
    load = ClientLoad(a.url, JobMix(demo_csv, 9), max_jobs=300).start()
    assert wait_until(lambda: len(load.acknowledged) >= 100, 60)
    [victim] = a.get("/api/info")[1]["pids"]["workers"]
    os.kill(victim, signal.SIGKILL)
    finish_load(load, 300)
    check_all(load, a)  # its jobs were reclaimed and run by the replacement
    [replacement] = a.get("/api/info")[1]["pids"]["workers"]
    assert replacement != victim
    assert a.stop() == 0, a.text()
