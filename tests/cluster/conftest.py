from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

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


class Load:
    """Clients POSTing a mix of jobs from threads, round robin over front-ends, until
    `count` are acknowledged or `seconds` pass. Keeps what each acknowledged id asked,
    and every refusal (status, Retry-After) seen on the way."""

    def __init__(self, servers, mix, count: int, clients: int = 6, seconds: float = 60.0):
        self.servers, self.mix, self.count = servers, mix, count
        self.acknowledged: dict[int, tuple[str, dict]] = {}
        self.order: list[int] = []      # ids in the order their 200s arrived
        self.refusals: list[tuple[int, str | None, float]] = []
        self.duplicates: list[int] = []  # ids acknowledged twice (must stay empty)
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + seconds
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(clients)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> Load:
        for thread in self._threads:
            thread.join(max(1.0, self._deadline - time.monotonic() + 10))
        return self

    def _client(self, index: int) -> None:
        turn = index
        while time.monotonic() < self._deadline:
            with self._lock:
                if len(self.acknowledged) >= self.count:
                    return
                endpoint, fields = next(self.mix)
            server = self.servers[turn % len(self.servers)]
            turn += 1
            started = time.monotonic()
            try:
                request = urllib.request.Request(
                    f"{server.url}/api/{endpoint}", data=json.dumps(fields).encode(),
                    headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(request, timeout=10) as response:
                    job_id = json.loads(response.read())["job_id"]
            except urllib.error.HTTPError as error:
                with error:
                    self.refusals.append((error.code, error.headers.get("Retry-After"),
                                          time.monotonic() - started))
                time.sleep(0.05)
                continue
            except OSError:  # a front-end killed by the test
                time.sleep(0.05)
                continue
            with self._lock:
                if job_id in self.acknowledged:
                    self.duplicates.append(job_id)
                self.acknowledged[job_id] = (endpoint, fields)
                self.order.append(job_id)

    def wait_acknowledged(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} acknowledged"
            time.sleep(0.02)

    def check(self, server, expected, timeout: float = 90.0) -> None:
        """Every acknowledged job ends done on `server`, with the embedded answer, and
        no id was handed out twice."""
        assert self.duplicates == []
        results = wait_all_done(server, sorted(self.acknowledged), timeout)
        for job_id, (endpoint, fields) in self.acknowledged.items():
            assert results[job_id] == expected(endpoint, fields), (job_id, endpoint, fields)


def wait_idle(server, timeout: float = 60.0) -> None:
    """Until the cluster has no job running (num_jobs is cluster-wide)."""
    deadline = time.monotonic() + timeout
    while server.get("/api/num_jobs")[1].get("num_jobs") != 0:
        assert time.monotonic() < deadline, "jobs still running"
        time.sleep(0.1)
