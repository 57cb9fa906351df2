"""Faults of the pool's own processes, on the real server (docs/pool.md "What each fault
costs"): a killed manager, a stopped manager, a stuck worker, a worker that cannot be
spawned. Processes come from /api/info "pids"; every acknowledged job must end `done`
with the reference answer; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
from http.client import HTTPConnection

from tests.support.live import LiveServer, shm_segments, start_server
from tests.support.load import ClientLoad, JobMix, alive, http, log_text, wait_until

WORKERS = 2
ENDPOINTS = ("mean_by_category", "state_mean_by_category", "states_mean", "best5")


def pool(server: LiveServer) -> dict:
    status, info, _ = http(f"{server.url}/api/info", timeout=10)
    assert status == 200, info
    return {**info["pool"], **info["pids"]}


def ready(server: LiveServer) -> tuple[int, dict]:
    status, body, _ = http(f"{server.url}/readyz", timeout=10)
    return status, body


def every_job_done(server: LiveServer, load: ClientLoad, mix: JobMix) -> int:
    for job_id, (endpoint, body) in load.acknowledged.items():
        status, result, _ = http(f"{server.url}/api/get_results/{job_id}?wait=25", timeout=30)
        assert status == 200, (job_id, result)
        mix.check(endpoint, body, result)
    return len(load.acknowledged)


def stopped_cleanly(server: LiveServer) -> None:
    assert server.stop(timeout=40) == 0, server.text()
    assert shm_segments(server.pid) == []


def test_a_killed_manager_is_replaced_and_every_job_ends_done(tmp_path, demo_csv):
    mix = JobMix(demo_csv, 11, endpoints=ENDPOINTS)
    server = start_server(tmp_path, data=demo_csv, workers=WORKERS)
    load = ClientLoad(server.url, mix, clients=4, seed=11, max_jobs=1500).start()
    time.sleep(0.5)
    before = pool(server)
    os.kill(before["manager"], signal.SIGKILL)
    time.sleep(1.0)
    assert http(f"{server.url}/healthz", timeout=5)[0] == 200

    def replaced():
        now = pool(server)
        return (
            now["ready"]
            and now["manager"] not in (None, before["manager"])
            and alive(now["manager"])
            and len(now["workers"]) == WORKERS
            and all(alive(p) for p in now["workers"])
        )

    assert wait_until(replaced, 30), pool(server)
    load.stop(timeout=60)
    assert load.unreachable == 0 and load.refused == 0
    count = every_job_done(server, load, mix)
    after = pool(server)
    assert after["manager_restarts"] == 1 and after["deaths"] == 0, after
    assert not set(after["workers"]) & set(before["workers"])
    assert not any(alive(p) for p in [before["manager"], *before["workers"]])
    assert "the manager process died; starting a new manager" in log_text(server.log_file)
    print(f"\nmanager killed under load: {count} jobs, all done with the reference answer")
    stopped_cleanly(server)


def test_a_stopped_manager_freezes_no_endpoint_and_readyz_tells(tmp_path, demo_csv):
    mix = JobMix(demo_csv, 12, endpoints=ENDPOINTS)
    server = start_server(tmp_path, data=demo_csv, workers=WORKERS)
    manager = pool(server)["manager"]
    load = ClientLoad(server.url, mix, clients=2, seed=12, max_jobs=300).start()
    time.sleep(0.3)
    os.kill(manager, signal.SIGSTOP)
    try:

        def says_so():
            status, body = ready(server)
            return status == 503 and "has not answered" in body["reason"]

        assert wait_until(says_so, 15), ready(server)
        for path in ("/healthz", "/api/info", "/api/num_jobs", "/api/jobs", "/metrics"):
            assert _status(server, path) == 200, path
        assert pool(server)["ready"] is False
        endpoint, body = mix.pick()  # accepted (journaled) meanwhile, run once it is back
        status, answer, _ = http(f"{server.url}/api/{endpoint}", "POST", body, timeout=5)
        assert status == 200, answer
        load.acknowledged[answer["job_id"]] = (endpoint, body)
    finally:
        os.kill(manager, signal.SIGCONT)
    assert wait_until(lambda: ready(server)[0] == 200, 15), ready(server)
    load.stop(timeout=60)
    every_job_done(server, load, mix)
    assert pool(server)["manager"] == manager  # it came back: nothing was replaced
    stopped_cleanly(server)


def test_a_manager_that_never_answers_is_replaced_and_sigterm_ends_the_server(tmp_path, demo_csv):
    """SIGSTOP the manager for good, then SIGTERM: after job_timeout the pool gives up
    on the manager, starts a new one, the accepted jobs drain, and the server exits 0;
    a restart on the same state dir answers every acknowledged job."""
    mix = JobMix(demo_csv, 13, endpoints=ENDPOINTS)
    env = {"LESTATS_JOB_TIMEOUT": "3"}
    server = start_server(tmp_path, data=demo_csv, workers=WORKERS, env=env)
    manager = pool(server)["manager"]
    load = ClientLoad(server.url, mix, clients=2, seed=13, max_jobs=300).start()
    time.sleep(0.3)
    os.kill(manager, signal.SIGSTOP)
    time.sleep(0.5)
    load.stop(timeout=30)
    assert load.acknowledged
    code = server.stop(timeout=40)
    assert code == 0, server.text()
    assert not alive(manager)
    assert "has not answered for" in log_text(server.log_file)
    again = start_server(
        tmp_path, data=demo_csv, workers=WORKERS, state_dir=server.state_dir, port=server.port
    )
    every_job_done(again, load, mix)
    stopped_cleanly(again)


def test_a_stuck_worker_is_killed_after_job_timeout_and_its_jobs_end_done(tmp_path, demo_csv):
    mix = JobMix(demo_csv, 14, endpoints=ENDPOINTS)
    env = {"LESTATS_JOB_TIMEOUT": "3"}
    server = start_server(tmp_path, data=demo_csv, workers=WORKERS, env=env)
    load = ClientLoad(server.url, mix, clients=4, seed=14, max_jobs=1500).start()
    time.sleep(0.5)
    stuck = pool(server)["workers"][0]
    os.kill(stuck, signal.SIGSTOP)
    assert wait_until(lambda: not alive(stuck), 20), "the stopped worker was not killed"

    def full():
        now = pool(server)
        return (
            now["ready"]
            and len(now["workers"]) == WORKERS
            and stuck not in now["workers"]
            and all(alive(p) for p in now["workers"])
        )

    assert wait_until(full, 20), pool(server)
    load.stop(timeout=60)
    assert load.unreachable == 0 and load.refused == 0
    every_job_done(server, load, mix)
    log = log_text(server.log_file)
    assert f"(pid {stuck}) has " in log and "for more than 3 s (job_timeout); killing it" in log
    assert pool(server)["timeouts"] >= 1
    stopped_cleanly(server)


FILE_LIMIT = 160


def _limit_files() -> None:
    """In the server's process before exec: a hard limit it cannot raise."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def test_a_worker_that_cannot_be_spawned_is_retried_and_readyz_tells(tmp_path, demo_csv):
    """EMFILE, for real: the server may open FILE_LIMIT files; idle client connections
    fill its table, then a worker is killed. Its replacement cannot be spawned (no
    descriptors for the pipes): the pool is not ready and says why, and keeps trying;
    once the connections close the replacement starts and the jobs end done."""
    mix = JobMix(demo_csv, 15, endpoints=ENDPOINTS)
    server = start_server(
        tmp_path,
        data=demo_csv,
        workers=WORKERS,
        preexec_fn=_limit_files,
        env={"LESTATS_CLIENT_TIMEOUT": "120"},
    )
    control = HTTPConnection("127.0.0.1", server.port, timeout=10)
    fillers: list[socket.socket] = []
    try:
        submitted = [_post(control, *mix.pick()) for _ in range(20)]
        _fill_file_table(server, fillers)
        victim = _get(control, "/api/info")[1]["pids"]["workers"][0]
        os.kill(victim, signal.SIGKILL)

        def short():
            status, body = _get(control, "/readyz")
            return status == 503 and "1 of 2 worker processes are running" in body["reason"]

        assert wait_until(short, 15), _get(control, "/readyz")
        info = _get(control, "/api/info")[1]
        assert info["pool"]["spawn_failures"] >= 1 and len(info["pids"]["workers"]) == 1
        assert "\nlestats_pool_ready 0.0\n" in _metrics(control)
        submitted += [_post(control, *mix.pick()) for _ in range(20)]
    finally:
        for sock in fillers:
            sock.close()
    assert wait_until(lambda: _get(control, "/readyz")[0] == 200, 20), _get(control, "/readyz")
    assert "\nlestats_pool_ready 1.0\n" in _metrics(control)
    for job_id, endpoint, body in submitted:
        status, result = _get(control, f"/api/get_results/{job_id}?wait=25")
        assert status == 200, result
        mix.check(endpoint, body, result)
    control.close()
    assert "cannot start a worker process" in log_text(server.log_file)
    stopped_cleanly(server)


def test_sigterm_with_a_pool_that_cannot_recover_exits_1_and_the_journal_recovers(
    tmp_path, demo_csv
):
    """No worker can be spawned (EMFILE, as above, and both workers killed): SIGTERM
    does not wait forever for jobs nobody can run. After job_timeout without a ready
    pool the server exits 1 (a supervisor restarts it); the jobs stay in the journal
    and the next start answers them."""
    mix = JobMix(demo_csv, 16, endpoints=ENDPOINTS)
    server = start_server(
        tmp_path,
        data=demo_csv,
        workers=WORKERS,
        preexec_fn=_limit_files,
        env={"LESTATS_CLIENT_TIMEOUT": "120", "LESTATS_JOB_TIMEOUT": "3"},
    )
    control = HTTPConnection("127.0.0.1", server.port, timeout=10)
    fillers: list[socket.socket] = []
    try:
        _fill_file_table(server, fillers)
        for victim in _get(control, "/api/info")[1]["pids"]["workers"]:
            os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: _get(control, "/api/info")[1]["pids"]["workers"] == [], 15)
        submitted = [_post(control, *mix.pick()) for _ in range(10)]
        assert server.stop(timeout=40) == 1, server.text()
    finally:
        for sock in fillers:
            sock.close()
        control.close()
    assert "stopping with 10 unfinished job(s)" in log_text(server.log_file)
    assert shm_segments(server.pid) == []
    again = start_server(tmp_path, data=demo_csv, workers=WORKERS, state_dir=server.state_dir)
    for job_id, endpoint, body in submitted:
        status, result, _ = http(f"{again.url}/api/get_results/{job_id}?wait=25", timeout=30)
        assert status == 200, result
        mix.check(endpoint, body, result)
    stopped_cleanly(again)


def _fill_file_table(server: LiveServer, fillers: list[socket.socket]) -> None:
    """Idle connections until the server has one descriptor left."""
    while _open_files(server.pid) < FILE_LIMIT - 1 and len(fillers) < FILE_LIMIT:
        fillers.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.01)  # let the server accept it
    assert wait_until(lambda: _open_files(server.pid) >= FILE_LIMIT - 1, 10)


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _get(connection: HTTPConnection, path: str) -> tuple[int, dict]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _metrics(connection: HTTPConnection) -> str:
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    return response.read().decode()


def _post(connection: HTTPConnection, endpoint: str, body: dict) -> tuple[int, str, dict]:
    connection.request(
        "POST", f"/api/{endpoint}", json.dumps(body), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 200, answer
    return answer["job_id"], endpoint, body


def _status(server: LiveServer, path: str) -> int:
    """The status of a GET with a 5 s timeout (a hang fails the test)."""
    connection = HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
