"""The benchmark must not break silently: run `bench --quick` end to end.

A few hundred jobs against real server processes, with locust in a separate
process. Only the shape of the results is checked — never a time or a rate: those
are the benchmark's output (printed), not a pass/fail of the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = {
    "states_mean",
    "state_mean",
    "best5",
    "worst5",
    "global_mean",
    "diff_from_mean",
    "state_diff_from_mean",
    "mean_by_category",
    "state_mean_by_category",
}
USER_CLASSES = {"ExistingClientUser", "LongPollUser", "MixedUser", "HeavyUser", "CeilingUser"}


def test_locust_user_classes_are_selectable_by_name():
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "tests/load/locustfile.py", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert USER_CLASSES <= set(listed.stdout.split())


def test_quick_benchmark_produces_every_number(tmp_path):
    out = tmp_path / "bench.json"
    # The timeout only keeps a hang from blocking the suite; it is not a measurement.
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.load.bench",
            "--quick",
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
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Targets" in completed.stdout

    results = json.loads(out.read_text())
    assert {"meta", "datasets", "startup", "in_worker_us", "ceiling", "load", "targets"} <= set(
        results
    )
    assert results["meta"]["quick"] is True
    assert all(code == 0 for code in results["meta"]["server_exit_codes"])

    cells = {(row["workload"], row["poll"]) for row in results["load"]}
    assert cells == {("mixed", "0.2"), ("mixed", "long"), ("heavy", "0.2"), ("heavy", "long")}
    for row in results["load"]:
        assert row["jobs"] > 0, row
        assert row["failures"] == 0, row["failure_reasons"]
        for key in (
            "jobs_per_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "ratio_to_ceiling",
            "cpu_percent",
            "users",
        ):
            assert key in row
    assert sum(row["jobs"] for row in results["load"]) >= 100

    ceiling = results["ceiling"]["locust"]
    assert ceiling["jobs"] > 0 and ceiling["rate_per_s"] > 0 and ceiling["failures"] == 0
    # Server CPU per request and per job, by process, from /proc before and after
    # each run; efficiency = per trivial GET ÷ per job.
    roles = {"parent", "manager", "workers", "other"}
    for row in [ceiling, *results["load"]]:
        cpu = row["server_cpu_ms"]
        assert set(cpu) == roles | {"total"}, cpu
        assert all(cpu[role] >= 0 for role in roles), cpu
        assert cpu["parent"] > 0 and cpu["total"] > 0, cpu
        assert abs(cpu["total"] - sum(cpu[role] for role in roles)) < 0.01, cpu
    for row in results["load"]:
        # A job is at least two requests, so it cannot cost less than one: a value
        # at or above 1 means the numerator or the denominator is wrong.
        assert 0 < row["efficiency"] < 1, row
        assert row["efficiency"] == round(
            ceiling["server_cpu_ms"]["total"] / row["server_cpu_ms"]["total"], 3
        )
    efficiency = [t for t in results["targets"] if "efficiency" in t["target"]]
    assert len(efficiency) == 2, results["targets"]
    assert "wrk" in results["ceiling"]

    for label in ("demo", "big"):
        startup = results["startup"][label]
        for key in ("load_s_median", "ready_s_median", "first_answer_s_median", "memory_mb"):
            assert startup[key] is not None and startup[key] > 0, (label, key)
        assert all(run["segment_released"] for run in startup["runs"])
        assert set(results["in_worker_us"][label]) == ENDPOINTS
        assert all(cost["median_us"] > 0 for cost in results["in_worker_us"][label].values())
        assert results["worker_path_us"][label]["jobs"] > 0

    assert results["targets"]
    assert all(isinstance(target["pass"], bool) for target in results["targets"])


def test_profile_is_split_by_server_process(tmp_path):
    """`--profile` samples every server process (py-spy --subprocesses): each stack
    starts with one `process PID:"command line";` per process down to the sampled one,
    and a child's command line holds ";" (spawn_main)."""
    from tests.load.bench import summarise_profile

    child = (
        'process {pid}:"python -c from multiprocessing.spawn import spawn_main; '
        'spawn_main(pipe_handle=9)"'
    )
    parent = 'process 100:"python -m server serve"'
    raw = tmp_path / "server.collapsed.txt"
    raw.write_text(
        f"{parent};thread (1): MainThread;run (uvloop/__init__.py:92);"
        "submit (server/routes.py:80) 6\n"
        f"{parent};thread (2): log-writer;LogWriter.run (server/logsetup.py:10) 2\n"
        f"{parent};{child.format(pid=201)};thread (3): MainThread;"
        "main (server/pool/worker.py:140);answer (compute/stats.py:20) 3\n"
        f"{parent};{child.format(pid=202)};thread (4): MainProcess|pool-loop;"
        "Server.serve_client (multiprocessing/managers.py:273) 1\n"
    )
    profile = summarise_profile(raw, {100: "parent", 201: "workers", 202: "manager"})
    assert profile is not None and profile["samples"] == 12
    processes = profile["processes"]
    assert list(processes) == ["parent", "workers", "manager"]  # most samples first
    assert [processes[r]["percent"] for r in processes] == [66.7, 25.0, 8.3]
    assert processes["parent"]["threads"] == [
        {"frame": "MainThread", "percent": 75.0},
        {"frame": "log-writer", "percent": 25.0},
    ]
    assert processes["workers"]["self"] == [
        {"frame": "answer (compute/stats.py)", "percent": 100.0}
    ]
    files = {f["frame"] for f in processes["workers"]["files"]}
    assert files == {"server/pool/worker.py", "compute/stats.py"}  # spawn entry left out
    assert processes["manager"]["threads"][0]["frame"] == "MainProcess|pool-loop"
