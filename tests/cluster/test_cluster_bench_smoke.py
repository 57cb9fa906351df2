"""`make bench-cluster` must not break silently: a short run end to end, and the
capacity arithmetic. Only the shape of the results and the arithmetic are checked,
never a time or a rate (those are the benchmark's output: docs/cluster-benchmark.md)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.load.cluster_bench import CORES, capacity
from tests.support.live import ROOT


def test_a_short_cluster_benchmark_produces_every_number(tmp_path):
    out = tmp_path / "cluster-bench.json"
    # The timeout only keeps a hang from blocking the suite; it is not a measurement.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.load.cluster_bench",
            "--duration",
            "3",
            "--warmup",
            "0",
            "--users",
            "2",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads(out.read_text())
    runs = {(row["mode"], row["frontends"]): row for row in results["runs"]}
    assert set(runs) == {("embedded", 1), ("cluster", 1), ("cluster", 2)}
    for key, row in runs.items():
        assert row["jobs"] > 0 and row["failures"] == 0, (key, row["failure_reasons"])
        components = {"front-end", "worker"} | ({"redis"} if key[0] == "cluster" else set())
        assert components <= set(row["cpu_ms_per_job"]), (key, row["cpu_ms_per_job"])
        assert all(code == 0 for code in row["exit_codes"]), (key, row["exit_codes"])
    for frontends in (1, 2):
        row = runs[("cluster", frontends)]
        assert row["redis_used_memory_mb"] > 0
        if all(row["cpu_ms_per_job"][c] for c in ("front-end", "worker", "redis")):
            assert row["capacity"]["one_machine"]["bottleneck"]


def test_capacity_names_the_component_that_limits():
    # Redis cheap: the machines' CPU limits; 16 cores / (1 + 1 + 0.1) ms.
    cheap = capacity({"cpu_ms_per_job": {"front-end": 1.0, "worker": 1.0, "redis": 0.1}})
    assert cheap["one_machine"] == {
        "jobs_per_s": round(CORES * 1000 / 2.1),
        "bottleneck": "CPU of the machine",
    }
    assert cheap["machines"][1] == {
        "jobs_per_s": CORES * 1000 // 2,
        "bottleneck": "CPU of the machines",
    }
    # From about 1.25 machines (10 000 / 8 000), the one Redis core is the limit.
    assert cheap["machines"][2] == {"jobs_per_s": 10_000, "bottleneck": "Redis (one core)"}
    assert cheap["machines_until_redis_limits"] == 1.2
    # Redis dear: it limits even one machine.
    dear = capacity({"cpu_ms_per_job": {"front-end": 1.0, "worker": 1.0, "redis": 1.0}})
    assert dear["one_machine"] == {"jobs_per_s": 1000, "bottleneck": "Redis (one core)"}
    # The embedded mode has no Redis, and no capacity beyond its parent's one core.
    assert capacity({"cpu_ms_per_job": {"front-end": 1.0, "worker": 1.0}}) == {}
    assert capacity({"cpu_ms_per_job": {"front-end": 1.0, "worker": None, "redis": 0.1}}) == {}
