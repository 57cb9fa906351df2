from __future__ import annotations

import time

import pytest

from tests.support.cluster import NODES, REDISES, start_redis
from tests.support.load import ClientLoad, wait_until


@pytest.fixture(autouse=True)
def no_cluster_process_outlives_its_test():
    """Worker nodes and redis-servers a test started are killed when it ends, even when
    it fails half-way (front-ends are handled by tests/conftest.py)."""
    nodes, redises = len(NODES), len(REDISES)
    yield
    for node in NODES[nodes:]:
        node.kill_all()
    del NODES[nodes:]
    for server in REDISES[redises:]:
        server.kill()
    del REDISES[redises:]


@pytest.fixture
def broker(tmp_path):
    return start_redis(tmp_path / "redis")


def wait_all_done(server, ids, timeout: float = 60.0) -> dict[int, dict]:
    """Long-poll every id on `server` until it is no longer running; its answers."""
    results, deadline = {}, time.monotonic() + timeout
    for job_id in ids:
        while True:
            assert time.monotonic() < deadline, f"job {job_id} still running on {server.url}"
            status, result = server.get(f"/api/get_results/{job_id}?wait=5", timeout=15)
            if status == 503:  # redis restarting: retry as a client would
                time.sleep(0.2)
                continue
            assert status == 200, (job_id, status, result)
            if result["status"] != "running":
                results[job_id] = result
                break
    return results


def finish_load(load: ClientLoad, count: int, timeout: float = 90.0) -> ClientLoad:
    """Let `load` run until `count` jobs are acknowledged, then stop its clients."""
    reached = wait_until(lambda: len(load.acknowledged) >= count, timeout)
    load.stop()
    assert reached, f"only {len(load.acknowledged)} of {count} jobs acknowledged"
    return load


def check_all(load: ClientLoad, server, ids=None, timeout: float = 90.0) -> None:
    """Every job of `load` (or `ids` of it) ends done on `server`, with the answer of
    the reference implementation."""
    ids = sorted(load.acknowledged if ids is None else ids)
    for job_id, result in wait_all_done(server, ids, timeout).items():
        load.mix.check(*load.acknowledged[job_id], result)


def wait_idle(server, timeout: float = 60.0) -> None:
    """Until the cluster has no job running (num_jobs is cluster-wide)."""
    deadline = time.monotonic() + timeout
    while server.get("/api/num_jobs")[1].get("num_jobs") != 0:
        assert time.monotonic() < deadline, "jobs still running"
        time.sleep(0.1)
