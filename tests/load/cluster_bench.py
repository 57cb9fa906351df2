"""The cluster benchmark: what a job costs each component, and what that buys.

    python -m tests.load.cluster_bench [--duration 15] [--users 16] [--workers 2]

One run, the same locust load (tests/load/locustfile.py, MixedUser, long polling, one
locust process) against, in turn:

1. the embedded mode: `lestats serve --workers W` (one parent, W worker processes);
2. the cluster with 1 front-end: redis-server from deploy/redis.conf, `lestats serve
   --broker … --workers 0` and a worker node `lestats worker --workers W`;
3. the same with `--frontends 2` (two front-end processes on one port).

Every process is real and fresh for each configuration. While locust runs, the
sampler of tests/load/bench.py reads utime+stime from /proc for each component (the
front-end processes with their supervisor, redis-server, the worker node with its
processes, locust, the rest of the machine); CPU ms per job = CPU time ÷ jobs. From
those, a capacity estimate for one 16-core machine and for N such machines, naming
the component that limits it. Nothing is asserted: docs/cluster-benchmark.md has the
method and the recorded figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.load import bench
from tests.support.cluster import start_redis, start_worker_node

CORES = 16  # the machine size of the capacity table
MACHINES = (1, 2, 4, 8, 16)


@dataclass
class ClusterFrontEnds(bench.Server):
    """`lestats serve --broker URL --frontends N --workers 0`: pure front-ends."""

    broker: str = ""
    frontends: int = 1

    def command(self) -> list[str]:
        return [*super().command(), "--broker", self.broker, "--frontends", str(self.frontends)]

    def wait_all(self, timeout: float = 60.0) -> None:
        """Until every front-end answers (the first ready one answers alone at first)."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self.frontends:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(seen)} of {self.frontends} front-ends answered:\n{self.log_tail()}"
                )
            status, info = bench.http(f"{self.url}/api/info", timeout=2.0)
            if status == 200:
                seen.add(info["pids"]["parent"])


def demo_dataset(cache: Path) -> Path:
    from compute import demo

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"demo-{demo.DEFAULT_ROWS}-seed0.csv"  # the file bench.py uses
    if not path.is_file():
        demo.write(path, count=demo.DEFAULT_ROWS, seed=0)
    return path


def make_plan(args) -> bench.Plan:
    return bench.Plan(
        quick=False,
        users=(args.users,),
        duration=args.duration,
        warmup=args.warmup,
        processes=1,
        workers=args.workers,
        big_rows=0,
        startup_repeats=0,
        worker_calls=0,
        worker_budget=0.0,
        max_jobs=0,
        long_poll_wait=5.0,
        ceiling_single=False,
        wrk_seconds=0.0,
        generator_check=False,
    )


def readers(components: dict[str, list[int]]):
    """CPU-time readers per component (pids fixed for the run), plus locust and the
    machine, for bench.CpuSampler."""

    def groups(locust_pid: int) -> dict:
        found = {
            name: (lambda pids=pids: bench.cpu_seconds(pids)) for name, pids in components.items()
        }
        locust = bench.descendants(locust_pid)
        found["locust"] = lambda: bench.cpu_seconds(locust)
        found["machine"] = bench.machine_busy_seconds
        return found

    return groups


def warm_up(url: str, questions: list[str]) -> None:
    """One answered job: the whole path (front-end, Redis, worker) is up."""
    bench.run_one_job(url, "global_mean", questions[0], None)


def run_embedded(data: Path, plan: bench.Plan, workdir: Path) -> dict:
    server = bench.Server(data, plan.workers, workdir / "embedded").start()
    try:
        warm_up(server.url, server.info["questions"])
        components = {"front-end": [server.pid], "worker": server.worker_pids()}
        row = bench.run_locust(
            server,
            "MixedUser",
            plan.users[0],
            plan,
            workdir / "embedded" / "locust",
            poll="long",
            groups=readers(components),
        )
    finally:
        exit_code = server.stop()
    return {"mode": "embedded", "frontends": 1, **row, "exit_codes": [exit_code]}


def run_cluster(data: Path, plan: bench.Plan, frontends: int, workdir: Path) -> dict:
    import redis as redis_client

    here = workdir / f"cluster-{frontends}fe"
    broker = start_redis(here / "redis")
    node = server = None
    try:
        node = start_worker_node(here, "node", broker, data, workers=plan.workers)
        server = ClusterFrontEnds(
            data, 0, here / "front", broker=broker.url, frontends=frontends
        ).start()
        server.wait_all()
        warm_up(server.url, server.info["questions"])
        components = {
            "front-end": bench.descendants(server.pid),
            "redis": [broker.process.pid],
            "worker": bench.descendants(node.pid),
        }
        row = bench.run_locust(
            server,
            "MixedUser",
            plan.users[0],
            plan,
            here / "locust",
            poll="long",
            groups=readers(components),
        )
        memory = redis_client.Redis.from_url(broker.url).info("memory")
        row["redis_used_memory_mb"] = round(memory["used_memory"] / bench.MB, 2)
    finally:
        codes = [server.stop() if server else None, node.stop() if node else None]
        broker.kill()
    return {"mode": "cluster", "frontends": frontends, **row, "exit_codes": codes}


def capacity(row: dict) -> dict:
    """Jobs/s a bigger deployment could carry, from the CPU ms per job measured here.

    - one 16-core machine running front-ends, workers and Redis: the cores are shared
      in proportion to each component's cost, and Redis uses one core at most;
    - N 16-core machines of front-ends and workers, Redis on its own core elsewhere:
      the machines add up; the one Redis does not.
    Loopback only: a real network adds kernel time per packet on every component."""
    ms = row["cpu_ms_per_job"]
    front, worker, redis = ms.get("front-end"), ms.get("worker"), ms.get("redis") or 0.0
    if not front or not worker or "redis" not in ms:
        return {}  # the embedded mode: one parent's core is its limit, whatever the machine
    redis_limit = 1000.0 / redis if redis else None
    single = CORES * 1000.0 / (front + worker + redis)
    table = {
        "cores": CORES,
        "redis_one_core_jobs_per_s": _round(redis_limit),
        "one_machine": _bounded(single, redis_limit, "CPU of the machine"),
    }
    per_machine = CORES * 1000.0 / (front + worker)
    table["machines"] = {
        n: _bounded(n * per_machine, redis_limit, "CPU of the machines") for n in MACHINES
    }
    if redis_limit:
        table["machines_until_redis_limits"] = round(redis_limit / per_machine, 1)
    share = front / (front + worker)
    table["front_end_core_share"] = round(share, 3)
    return table


def _bounded(cpu_limit: float, redis_limit: float | None, cpu_name: str) -> dict:
    if redis_limit is not None and redis_limit < cpu_limit:
        return {"jobs_per_s": round(redis_limit), "bottleneck": "Redis (one core)"}
    return {"jobs_per_s": round(cpu_limit), "bottleneck": cpu_name}


def _round(value):
    return None if value is None else round(value)


def table(results: dict) -> str:
    meta = results["meta"]
    lines = [
        (
            f"Le Stats Sportif cluster benchmark  {meta['date']}  {meta['cpus']} CPUs  "
            f"load avg at start {meta['loadavg_start'][0]:.2f}"
        ),
        (
            f"MixedUser, long polling, {meta['users']} users, one locust process, "
            f"{meta['duration']:g} s per run (first {meta['warmup']:g} s left out), "
            f"{meta['workers']} worker processes"
        ),
        "",
        (
            f"  {'mode':<22} {'jobs':>6} {'fail':>5} {'jobs/s':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8}   CPU ms/job: front-end  redis  worker  locust   others %"
            f"  Redis MB"
        ),
    ]
    for row in results["runs"]:
        ms = row["cpu_ms_per_job"]
        label = row["mode"] + (
            "" if row["mode"] == "embedded" else f", {row['frontends']} front-end(s)"
        )
        lines.append(
            f"  {label:<22} {row['jobs']:>6,} {row['failures']:>5} "
            f"{bench.fmt(row['rate_per_s']):>8} {bench.fmt(row['p50_ms'], 2):>8} "
            f"{bench.fmt(row['p99_ms'], 2):>8}   {'':>11}"
            f"{bench.fmt(ms.get('front-end'), 3):>9} {bench.fmt(ms.get('redis'), 3):>6} "
            f"{bench.fmt(ms.get('worker'), 3):>7} {bench.fmt(ms.get('locust'), 3):>7} "
            f"{bench.fmt((row['cpu_percent'] or {}).get('others'), 0):>9}"
            f"  {bench.fmt(row.get('redis_used_memory_mb'), 1):>8}"
        )
    for row in results["runs"]:
        cap = row.get("capacity")
        if not cap or row["mode"] != "cluster":
            continue
        lines += [
            "",
            (
                f"Capacity from the cluster run with {row['frontends']} front-end(s): "
                f"{CORES}-core machines; Redis uses one core: "
                f"{bench.fmt(cap['redis_one_core_jobs_per_s'])} jobs/s at the CPU "
                f"per job measured"
            ),
            (
                f"  one machine, everything on it: {cap['one_machine']['jobs_per_s']:,} "
                f"jobs/s, limited by {cap['one_machine']['bottleneck']}"
            ),
        ]
        for n, cell in cap["machines"].items():
            lines.append(
                f"  {n:>2} machine(s) + Redis elsewhere: {cell['jobs_per_s']:>9,} "
                f"jobs/s, limited by {cell['bottleneck']}"
            )
        if cap.get("machines_until_redis_limits") is not None:
            lines.append(
                f"  Redis becomes the limit from about "
                f"{cap['machines_until_redis_limits']} machines"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.load.cluster_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out")
    parser.add_argument("--users", type=int, default=16, help="locust users")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--out", default="cluster-bench-results.json")
    parser.add_argument("--cache-dir", default=str(bench.DEFAULT_CACHE))
    parser.add_argument(
        "--workdir", help="keep logs here (default: a temporary directory, removed)"
    )
    args = parser.parse_args(argv)
    plan = make_plan(args)
    os.chdir(bench.ROOT)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lestats-cluster-bench-"))
    data = demo_dataset(Path(args.cache_dir))
    results = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["python -m tests.load.cluster_bench", *sys.argv[1:]]),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "locust": version("locust"),
            "users": args.users,
            "duration": args.duration,
            "warmup": args.warmup,
            "workers": args.workers,
            "data": str(data),
        },
        "runs": [],
    }
    try:
        bench.log("embedded mode")
        results["runs"].append(run_embedded(data, plan, workdir))
        for frontends in (1, 2):
            bench.log(f"cluster mode, {frontends} front-end(s)")
            results["runs"].append(run_cluster(data, plan, frontends, workdir))
    except Exception:
        bench.log(f"failed; logs kept in {workdir}")
        raise
    for row in results["runs"]:
        row["capacity"] = capacity(row)
    results["meta"]["loadavg_end"] = os.getloadavg()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
