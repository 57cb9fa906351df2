from __future__ import annotations

import json
import time

import pytest

from compute.dataset import load_csv
from compute.stats import answer
from tests.support.cluster import NODES, REDISES, start_redis


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


@pytest.fixture(scope="session")
def expected(demo_csv):
    """The embedded mode's answer body for a job, from compute/ on the same data."""
    dataset = load_csv(demo_csv)

    def body(endpoint: str, fields: dict) -> dict:
        data = answer(dataset, endpoint, fields["question"], fields.get("state"))
        return json.loads(b'{"status": "done", "data": ' + data + b"}")

    return body


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
