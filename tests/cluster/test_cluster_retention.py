"""Retention across the cluster: beyond max_results the oldest results are evicted
everywhere (410 from any front-end), and Redis memory stays bounded under a load."""

from __future__ import annotations

from compute.dataset import load_csv
from server.cluster import broker as keys
from tests.cluster.conftest import finish_load, wait_idle
from tests.support.cluster import start_frontend, start_worker_node
from tests.support.load import ClientLoad, JobMix

RETAIN = 50
ROUNDS, PER_ROUND = 5, 400


def test_eviction_is_cluster_wide_and_memory_stays_bounded(tmp_path, broker, demo_csv):
    env = {"LESTATS_MAX_RESULTS": str(RETAIN)}
    a = start_frontend(tmp_path, "a", broker, demo_csv, env=env)
    b = start_frontend(tmp_path, "b", broker, demo_csv, env=env)
    start_worker_node(tmp_path, "w1", broker, demo_csv, workers=2)
    redis = broker.client()
    stream = keys.stream(load_csv(demo_csv).fingerprint)
    mix = JobMix(demo_csv, 5)
    memory, ids = [], []
    for round_ in range(ROUNDS):  # POSTs only: most results are evicted before a GET
        load = ClientLoad([a.url, b.url], mix, seed=round_, max_jobs=PER_ROUND, polls=False)
        ids += finish_load(load.start(), PER_ROUND).acknowledged
        wait_idle(a)
        memory.append(broker.used_memory())
        assert redis.xlen(stream) == 0  # finished entries are deleted, not trimmed
    print(
        f"\nredis used_memory after each round of {PER_ROUND} jobs (max_results={RETAIN}): {memory}"
    )
    ids.sort()
    kept, evicted = ids[-RETAIN:], ids[:-RETAIN]
    for server in (a, b):
        listing = server.get("/api/jobs")[1]["data"]
        assert listing == [{f"job_id_{i}": "done"} for i in kept]
        for job_id in (evicted[0], evicted[len(evicted) // 2], evicted[-1]):
            status, reply = server.get(f"/api/get_results/{job_id}")
            assert status == 410, reply
        assert server.get(f"/api/get_results/{kept[0]}")[1]["status"] == "done"
    # Keys: the retained jobs plus a fixed handful (counter, sets, stream, cluster).
    assert redis.dbsize() <= RETAIN + 6
    # The 1,600 results of the later rounds, over 1 KB each on average, would add
    # megabytes if they were kept; bounded, the figure only wobbles.
    assert memory[-1] - memory[0] < 1024 * 1024, memory
