"""The benchmark: one command, real processes, numbers in a table and a JSON file.

    python -m tests.load.bench [--quick] [--out bench-results.json]

It runs from the project root and, in order:

1. start-up: starts the server (`python -m server serve`, a real process on a free
   loopback port) on the demo dataset and on a generated 1,000,000-row dataset,
   and measures the time from the process start until /api/info answers and until
   the first job's answer arrives, and the memory of the server's process tree
   (parent, workers, manager) with the shared segment counted once (sum of Pss);
2. in-worker cost: `compute.stats.answer` called in this process, per endpoint, over
   random questions and states, on both datasets (median µs; uncached: the worker
   memoises answers, this measures the computation and JSON encoding it memoises);
3. the ceiling: locust CeilingUser (GET /api/num_jobs) with the same locust set-up
   as the job runs, the same with one locust process, and wrk against the same GET
   (is locust the bottleneck?);
4. the job matrix: MixedUser and HeavyUser × 0.2 s polling and long polling × 1, 4
   and 16 users, each against a freshly started server on the demo dataset. Jobs
   count from the raw samples every locust process writes (tests/load/locustfile.py):
   jobs/s over the window after the warm-up, and p50/p99/max of POST→answer.

While every locust run goes on, a sampler reads /proc every 0.25 s for the CPU time
of the server's parent, of its workers and of the locust processes, so each row
shows who was busy. `--profile DIR` also records py-spy on every server process (the
parent, the manager and the workers) during the mixed long-poll run with the most
users and prints each one's top frames.

Nothing here asserts a time: targets are printed as pass/fail. docs/benchmark.md
describes the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compute.endpoints import ENDPOINTS as SPECS
from tests.support.live import free_port, serve_command, serve_environment
from tests.support.live import http as live_http

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
DEFAULT_CACHE = ROOT / "data" / "cache" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
ENDPOINTS = (
    "states_mean",
    "state_mean",
    "best5",
    "worst5",
    "global_mean",
    "diff_from_mean",
    "state_diff_from_mean",
    "mean_by_category",
    "state_mean_by_category",
)
# Which of them take a state or need a ranked question: the endpoint table says.
NEEDS_STATE = {name for name in ENDPOINTS if SPECS[name].needs_state}
NEEDS_DIRECTION = {name for name in ENDPOINTS if SPECS[name].needs_direction}
USER_CLASS = {"mixed": "MixedUser", "heavy": "HeavyUser"}
POLLS = ("0.2", "long")
SERVER_ROLES = ("parent", "manager", "workers", "other")
PROFILE_FILE = "server.collapsed.txt"  # py-spy's raw samples of every server process
# startup: start-up and memory; worker: in-worker cost; ceiling: the trivial GET;
# load: the job matrix; check: is the load generator the limit (wrk, one locust
# process for the ceiling, other locust process counts for the jobs).
SECTIONS = ("startup", "worker", "ceiling", "load", "check")

TARGETS = {
    # server CPU per trivial GET ÷ server CPU per job ≥ 0.35 (16 users, long polling);
    # a job is at least two requests, so 0.5 is the limit
    "efficiency": 0.35,
    "p99_ms": 50.0,  # p99 < 50 ms at 16 users (long polling)
    "demo_ready_s": 1.0,  # demo dataset serving < 1 s from start
    "big_ready_s": 5.0,  # 1M rows serving < 5 s from start
    "big_memory_mb": 500.0,  # 1M rows: parent + workers < 500 MB
    "demo_worker_us": 100.0,  # in-worker median < 100 µs on demo (every endpoint)
    "big_worker_us": 20_000.0,  # < 20 ms on 1M rows (every endpoint)
}


@dataclass
class Plan:
    quick: bool
    users: tuple[int, ...]
    duration: float  # seconds each locust run lasts
    warmup: float  # seconds at the start of a run left out of the numbers
    processes: int  # locust worker processes (1 = a single local process)
    workers: int  # server worker processes
    big_rows: int
    startup_repeats: int
    worker_calls: int  # calls per endpoint for the in-worker cost
    worker_budget: float  # seconds at most per endpoint and dataset
    max_jobs: int  # per locust process, 0 = unlimited
    long_poll_wait: float
    ceiling_single: bool  # also measure the ceiling with one locust process
    wrk_seconds: float
    generator_check: bool  # rerun mixed/long/most users with other locust process counts
    sections: tuple[str, ...] = SECTIONS
    polls: tuple[str, ...] = POLLS


def make_plan(args) -> Plan:
    cpus = os.cpu_count() or 1
    if args.quick:
        # One locust process: --processes costs ~3 s of start and stop per run.
        plan = Plan(
            quick=True,
            users=(4,),
            duration=4.0,
            warmup=0.0,
            processes=1,
            workers=2,
            big_rows=100_000,
            startup_repeats=1,
            worker_calls=30,
            worker_budget=0.3,
            max_jobs=120,
            long_poll_wait=5.0,
            ceiling_single=False,
            wrk_seconds=1.0,
            generator_check=False,
        )
    else:
        plan = Plan(
            quick=False,
            users=(1, 4, 16),
            duration=15.0,
            warmup=3.0,
            processes=min(max(cpus, 2), 4),
            workers=cpus,
            big_rows=1_000_000,
            startup_repeats=3,
            worker_calls=400,
            worker_budget=2.0,
            max_jobs=0,
            long_poll_wait=5.0,
            ceiling_single=True,
            wrk_seconds=10.0,
            generator_check=True,
        )
    for name in (
        "users",
        "duration",
        "warmup",
        "processes",
        "workers",
        "big_rows",
        "sections",
        "polls",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(plan, name, tuple(value) if isinstance(value, list) else value)
    if "load" in plan.sections and "ceiling" not in plan.sections:
        raise SystemExit(
            "--sections load needs ceiling too: the efficiency of a job run "
            "is relative to the server CPU per trivial GET"
        )
    return plan


# -- small helpers ------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def http(url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    """GET, or POST `body`: (status, parsed JSON)."""
    status, answer, _ = live_http(url, "GET" if body is None else "POST", body, timeout)
    return status, answer


def percentile_ms(latencies: np.ndarray, q: float) -> float | None:
    if latencies.size == 0:
        return None
    return round(float(np.percentile(latencies, q)) * 1000.0, 3)


# -- /proc: process trees, CPU time, memory -------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user+system) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            total += stat[1]
    return total


def _kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    values = {}
    try:
        with open(path) as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in names:
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def tree_memory(pid: int, segment_bytes: int) -> dict:
    """Memory of the server's process tree, the shared segment counted once.

    Pss (proportional set size) charges each page 1/n to each of the n processes
    mapping it, so the sum of Pss over the tree counts the shared segment (and shared
    libraries, and copy-on-write pages) once. The sum of Rss counts the segment once
    per process that touched it; Rss − RssShmem + segment is a cross-check."""
    pids = descendants(pid)
    pss = rss = private = 0
    per_process = {}
    for p in pids:
        rollup = _kb_fields(f"/proc/{p}/smaps_rollup", ("Rss", "Pss"))
        status = _kb_fields(f"/proc/{p}/status", ("VmRSS", "RssShmem"))
        if not rollup:
            continue
        pss += rollup.get("Pss", 0)
        rss += rollup.get("Rss", 0)
        private += status.get("VmRSS", 0) - status.get("RssShmem", 0)
        per_process[p] = round(rollup.get("Pss", 0) / 1024, 1)
    return {
        "pss_sum_mb": round(pss / 1024, 1),
        "rss_sum_mb": round(rss / 1024, 1),
        "rss_minus_shmem_plus_segment_mb": round(private / 1024 + segment_bytes / MB, 1),
        "segment_mb": round(segment_bytes / MB, 2),
        "processes": len(per_process),
        "pss_by_pid_mb": per_process,
    }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, every process)."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def process_groups(server: Server, locust_pid: int | None = None) -> dict:
    """CPU-time readers: the server's parent, its other processes (workers, manager,
    resource tracker), locust's processes, and everything else on the machine."""
    helpers = server.worker_pids()
    groups = {
        "server_parent": lambda: cpu_seconds([server.pid]),
        "server_workers": lambda: cpu_seconds(helpers),
    }
    if locust_pid is not None:
        groups["locust"] = lambda: cpu_seconds(descendants(locust_pid))
    groups["machine"] = machine_busy_seconds
    return groups


def server_cpu(server: Server) -> dict[str, float]:
    """CPU seconds (utime+stime) so far of the server's processes by role: the parent,
    the multiprocessing manager, the workers (pids from /api/info) and the rest of its
    tree (the resource tracker)."""
    role_of = server_roles(server)
    roles = dict.fromkeys(SERVER_ROLES, 0.0)
    for pid in descendants(server.pid):
        stat = _stat(pid)
        if stat is not None:
            roles[role_of.get(pid, "other")] += stat[1]
    return roles


def server_roles(server: Server) -> dict[int, str]:
    """pid → role (parent, manager, workers) of the server's processes now."""
    pids = server.info.get("pids") or {}
    roles = {pid: "workers" for pid in pids.get("workers") or ()}
    if pids.get("manager"):
        roles[pids["manager"]] = "manager"
    roles[server.pid] = "parent"
    return roles


def cpu_per_item(before: dict, after: dict, items: int) -> dict:
    """Server CPU milliseconds per job (or request) between two server_cpu readings,
    by role and in total."""
    spent = {role: max(after[role] - before[role], 0.0) for role in SERVER_ROLES}
    spent["total"] = sum(spent.values())
    return {
        role: round(seconds * 1000.0 / items, 4) if items else None
        for role, seconds in spent.items()
    }


class CpuSampler(threading.Thread):
    """Samples CPU seconds of named groups every `interval` seconds."""

    def __init__(self, groups, interval: float = 0.25):
        super().__init__(daemon=True, name="cpu-sampler")
        self.groups = groups  # name → callable returning CPU seconds now
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.time()
            self.samples.append((now, {name: read() for name, read in self.groups.items()}))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def usage(self, start: float, end: float) -> dict[str, float | None]:
        """Percent of one core used by each group between start and end."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {name: None for name in self.groups}
        (t0, first), (t1, last) = inside[0], inside[-1]
        # A group whose processes come and go (locust workers exit at the end) can
        # lose CPU time between samples; clamp at zero rather than show a negative.
        usage = {
            name: round(max(last[name] - first[name], 0.0) / (t1 - t0) * 100.0, 1)
            for name in self.groups
        }
        if "machine" in usage:  # what other tenants of a shared machine used meanwhile
            ours = sum(v for k, v in usage.items() if k != "machine")
            usage["others"] = round(max(usage.pop("machine") - ours, 0.0), 1)
        return usage


# -- the server as a real process ------------------------------------------------------
@dataclass
class Server:
    data: Path
    workers: int
    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None
    started: float = 0.0
    ready_seconds: float = 0.0
    info: dict = field(default_factory=dict)
    exit_code: int | None = None
    segment_released: bool | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = serve_environment(self.workdir / "webserver.log", {"PYTHONUNBUFFERED": "1"})
        command = self.command()
        self._stderr = open(self.workdir / "server.stderr", "wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return self._wait_ready(timeout)
        except BaseException:  # also Ctrl-C: never leave a server behind
            self.stop()
            raise

    def command(self) -> list[str]:
        """`lestats serve` as an operator starts it (tests.load.cluster_bench adds the
        cluster flags)."""
        return serve_command(self.port, self.workers, self.workdir / "state", self.data)

    def _wait_ready(self, timeout: float) -> Server:
        deadline = self.started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode} at start:\n{self.log_tail()}"
                )
            try:
                status, body = http(f"{self.url}/api/info", timeout=1.0)
                if status == 200:
                    self.ready_seconds = time.perf_counter() - self.started
                    self.info = body
                    return self
            except (OSError, ValueError):
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the server was not ready within {timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.005)

    @property
    def pid(self) -> int:
        return self.process.pid

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until the server's processes are idle: /api/info answers before the
        worker processes have imported numpy and attached the dataset, and that
        start-up CPU must not be charged to the first run's jobs."""
        deadline = time.monotonic() + timeout
        last = cpu_seconds(descendants(self.pid))
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = cpu_seconds(descendants(self.pid))
            if now - last <= 0.01:  # at most 5 % of a core over 0.2 s
                return
            last = now
        log(f"server {self.pid} still busy {timeout:g} s after start; measuring anyway")

    def worker_pids(self) -> list[int]:
        return [p for p in descendants(self.pid) if p != self.pid]

    def segment(self) -> tuple[str | None, int]:
        prefix = f"lestats-{self.pid}-"
        for name in os.listdir("/dev/shm"):
            if name.startswith(prefix):
                return name, os.stat(f"/dev/shm/{name}").st_size
        return None, int(self.info.get("shared_memory_bytes", 0))

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "server.stderr").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.exit_code is not None:
            return self.exit_code
        tree = descendants(self.pid)
        segment, _ = self.segment()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"server {self.pid} did not stop within {timeout:g} s; killing its processes")
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.exit_code = self.process.wait(10)
        self._stderr.close()
        self.segment_released = segment is None or not os.path.exists(f"/dev/shm/{segment}")
        return self.exit_code


def run_one_job(
    url: str, endpoint: str, question: str, state: str | None, wait: float = 10.0
) -> dict:
    body = {"question": question} if state is None else {"question": question, "state": state}
    status, posted = http(f"{url}/api/{endpoint}", body)
    if status != 200:
        raise RuntimeError(f"POST /api/{endpoint} answered {status}: {posted}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, result = http(
            f"{url}/api/get_results/{posted['job_id']}?wait={wait:g}", timeout=wait + 10
        )
        if status == 200 and result.get("status") != "running":
            return result
    raise RuntimeError(f"job {posted['job_id']} gave no answer within 30 s")


# -- datasets ----------------------------------------------------------------------------
def prepare_datasets(cache: Path, big_rows: int) -> dict[str, dict]:
    from compute import demo

    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for label, rows, seed in (("demo", demo.DEFAULT_ROWS, 0), ("big", big_rows, 1)):
        path = cache / f"demo-{rows}-seed{seed}.csv"
        if not path.is_file():
            log(f"generating {rows:,} synthetic rows into {path}")
            demo.write(path, count=rows, seed=seed)
        found[label] = {"path": str(path), "rows": rows, "seed": seed, "bytes": path.stat().st_size}
    return found


# -- 1. start-up ----------------------------------------------------------------------
def measure_startup(dataset: dict, plan: Plan, workdir: Path) -> dict:
    runs = []
    for attempt in range(plan.startup_repeats):
        server = Server(Path(dataset["path"]), plan.workers, workdir / f"startup-{attempt}")
        server.start()
        try:
            # The first answer needs a worker that has started and attached the segment.
            questions = server.info["questions"]
            states = server.info["states"]
            run_one_job(server.url, "global_mean", questions[0], None)
            first_answer = time.perf_counter() - server.started
            # Touch every endpoint and question once, as a server in use has, then
            # measure memory.
            for endpoint in ENDPOINTS:
                for question in questions:
                    run_one_job(
                        server.url,
                        endpoint,
                        question,
                        states[0] if endpoint in NEEDS_STATE else None,
                    )
            segment_name, segment_bytes = server.segment()
            memory = tree_memory(server.pid, segment_bytes)
        finally:
            server.stop()
        runs.append(
            {
                "ready_s": round(server.ready_seconds, 4),
                "first_answer_s": round(first_answer, 4),
                "load_s": server.info.get("load_seconds"),
                "startup_s": server.info.get("startup_seconds"),
                "memory": memory,
                "exit_code": server.exit_code,
                "segment_released": server.segment_released,
                "rows_loaded": server.info.get("rows_loaded"),
                "segment": segment_name,
            }
        )
    best = {
        key: statistics.median(r[key] for r in runs)
        for key in ("ready_s", "first_answer_s", "load_s", "startup_s")
    }
    return {
        "rows": dataset["rows"],
        "rows_loaded": runs[0]["rows_loaded"],
        "csv_mb": round(dataset["bytes"] / MB, 1),
        "repeats": len(runs),
        **{f"{k}_median": round(v, 4) for k, v in best.items()},
        "memory_mb": max(r["memory"]["pss_sum_mb"] for r in runs),
        "runs": runs,
    }


# -- 2. in-worker cost --------------------------------------------------------------------
def measure_worker_path(path: str, plan: Plan, seed: int = 11) -> dict:
    """What one job costs a worker as it really runs them: server.pool.worker.JobRunner
    (which memoises answers per question) over a stream of jobs with random endpoints,
    questions and states, as the mixed workload sends them."""
    from types import SimpleNamespace

    from compute.dataset import load_csv
    from compute.messages import Job
    from compute.questions import direction
    from server.pool.worker import JobRunner

    ds = load_csv(path)
    runner = JobRunner(SimpleNamespace(dataset=ds))
    rng = random.Random(seed)
    ranked = [q for q in ds.questions if direction(q) is not None]
    times = []
    budget_end = time.perf_counter() + plan.worker_budget * len(ENDPOINTS)
    for i in range(plan.worker_calls * len(ENDPOINTS)):
        endpoint = rng.choice(ENDPOINTS)
        question = rng.choice(ranked if endpoint in NEEDS_DIRECTION else ds.questions)
        state = rng.choice(ds.locations) if endpoint in NEEDS_STATE else None
        t0 = time.perf_counter_ns()
        runner.run(Job(i + 1, endpoint, question, state))
        times.append(time.perf_counter_ns() - t0)
        if i >= 5 and time.perf_counter() > budget_end:
            break
    array = np.array(times) / 1000.0
    return {
        "median_us": round(float(np.median(array)), 1),
        "p90_us": round(float(np.percentile(array, 90)), 1),
        "p99_us": round(float(np.percentile(array, 99)), 1),
        "jobs": len(times),
    }


def measure_in_worker(path: str, plan: Plan, seed: int = 7) -> dict:
    from compute.dataset import load_csv
    from compute.questions import direction
    from compute.stats import COMPUTE, answer

    ds = load_csv(path)
    rng = random.Random(seed)
    ranked = [q for q in ds.questions if direction(q) is not None]
    result = {}
    for endpoint in ENDPOINTS:
        pool = ranked if endpoint in NEEDS_DIRECTION else ds.questions
        times = []
        for _ in range(3):  # warm caches and code paths
            answer(ds, endpoint, rng.choice(pool), rng.choice(ds.locations))
        budget_end = time.perf_counter() + plan.worker_budget
        for i in range(plan.worker_calls):
            question = rng.choice(pool)
            state = rng.choice(ds.locations) if endpoint in NEEDS_STATE else None
            t0 = time.perf_counter_ns()
            answer(ds, endpoint, question, state)
            times.append(time.perf_counter_ns() - t0)
            if i >= 5 and time.perf_counter() > budget_end:
                break
        array = np.array(times) / 1000.0
        # The same number of calls of the statistic alone, without the JSON encoding
        # (answer = encode(compute)): where the time of an endpoint goes.
        compute, spec = [], SPECS[endpoint]
        for _ in range(len(times)):
            q = ds.question_index[rng.choice(pool)]
            s = ds.location_index[rng.choice(ds.locations)] if spec.needs_state else None
            t0 = time.perf_counter_ns()
            COMPUTE[endpoint](ds, q, s)
            compute.append(time.perf_counter_ns() - t0)
        result[endpoint] = {
            "median_us": round(float(np.median(array)), 1),
            "p90_us": round(float(np.percentile(array, 90)), 1),
            "min_us": round(float(array.min()), 1),
            "calls": len(times),
            "compute_only_median_us": round(float(np.median(compute)) / 1000, 1),
        }
    return result


# -- 3 and 4. locust runs ------------------------------------------------------------------
def run_locust(
    server: Server,
    user_class: str,
    users: int,
    plan: Plan,
    workdir: Path,
    poll: str | None = None,
    processes: int | None = None,
    profile: Path | None = None,
    groups=None,
) -> dict:
    """`groups(locust_pid)`: the CPU-time readers to sample (default: process_groups)."""
    processes = plan.processes if processes is None else processes
    samples_dir = workdir / "samples"
    shutil.rmtree(samples_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        server.url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{plan.duration:g}s",
        "--stop-timeout",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--samples-dir",
        str(samples_dir),
        "--long-poll-wait",
        f"{plan.long_poll_wait:g}",
        "--job-timeout",
        "60",
        "--max-jobs",
        str(plan.max_jobs),
    ]
    if poll is not None:
        command += ["--poll", poll]
    if processes > 1:
        master_port = free_port()
        command += [
            "--processes",
            str(processes),
            "--master-bind-port",
            str(master_port),
            "--master-port",
            str(master_port),
        ]
    command.append(user_class)
    workdir.mkdir(parents=True, exist_ok=True)
    output = open(workdir / "locust.out", "wb")
    server.settle()
    before = server_cpu(server)
    locust = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sampler = CpuSampler(groups(locust.pid) if groups else process_groups(server, locust.pid))
    sampler.start()
    spy = None
    if profile is not None:
        spy = start_profile(server.pid, profile, plan.duration)
    try:
        locust.wait(plan.duration + 60)
    except subprocess.TimeoutExpired:
        log(f"locust did not finish in time; stopping its process group {locust.pid}")
        os.killpg(locust.pid, signal.SIGKILL)
        locust.wait(10)
    except BaseException:  # Ctrl-C: locust runs in its own session, stop it too
        os.killpg(locust.pid, signal.SIGKILL)
        locust.wait(10)
        raise
    finally:
        sampler.stop()
        output.close()
        if spy is not None:
            finish_profile(spy)
    after = server_cpu(server)
    row = summarise(samples_dir, plan, sampler, locust.returncode, workdir / "locust.out")
    if spy is not None:
        row["profile"] = summarise_profile(spy[1], server_roles(server))
    # The whole run, warm-up included, from /proc before and after: every job (or
    # request) answered against everything the server's processes spent meanwhile.
    row["server_cpu_ms"] = cpu_per_item(before, after, row["jobs_total"])
    return row


def summarise(
    samples_dir: Path, plan: Plan, sampler: CpuSampler, exit_code: int, output: Path
) -> dict:
    rows, failures, warnings, files = [], Counter(), False, 0
    for path in sorted(samples_dir.glob("*.json")):
        content = json.loads(path.read_text())
        rows.extend(content["samples"])
        failures.update(content["failures"])
        warnings = warnings or content.get("cpu_warning", False)
        files += 1
    if not rows:
        tail = "\n".join(output.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"locust produced no samples (exit {exit_code}):\n{tail}")
    starts = np.array([r[1] for r in rows])
    latency = np.array([r[2] for r in rows])
    ends = starts + latency
    window_start = starts.min() + plan.warmup
    window_end = ends.max()
    if window_end - window_start < 0.5:  # everything happened during the warm-up
        window_start = starts.min()
    span = max(window_end - window_start, 1e-9)
    counted = ends >= window_start  # finished inside the window
    measured = latency[starts >= window_start]  # started after the warm-up
    if measured.size == 0:
        measured = latency
    by_endpoint = Counter(r[0] for r, c in zip(rows, counted) if c)
    rate = float(counted.sum()) / span
    cpu = sampler.usage(window_start, window_end)
    return {
        "jobs": int(counted.sum()),
        "jobs_total": len(rows),
        "failures": sum(failures.values()),
        "failure_reasons": dict(failures),
        "rate_per_s": round(rate, 1),
        "window_s": round(span, 2),
        "p50_ms": percentile_ms(measured, 50),
        "p99_ms": percentile_ms(measured, 99),
        "max_ms": percentile_ms(measured, 100),
        "latency_samples": int(measured.size),
        "by_endpoint": dict(sorted(by_endpoint.items())),
        "cpu_percent": cpu,
        "cpu_ms_per_job": per_item(cpu, rate),
        "locust_processes_reporting": files,
        "locust_cpu_warning": warnings,
        "locust_exit_code": exit_code,
    }


def per_item(cpu: dict, rate: float) -> dict:
    """CPU milliseconds each group spent per job (or request): % of a core ÷ rate.
    Less sensitive to a noisy machine than the rates themselves."""
    return {
        name: (round(percent * 10.0 / rate, 3) if percent is not None and rate else None)
        for name, percent in cpu.items()
        if name != "others"
    }


def run_wrk(server: Server, seconds: float, connections: int) -> dict | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    sampler = CpuSampler(process_groups(server))
    sampler.start()
    started = time.time()
    try:
        completed = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--latency",
                f"{server.url}/api/num_jobs",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
    finally:
        sampler.stop()
    text = completed.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", text, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)

    def ms(match):
        if match is None:
            return None
        return round(
            float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)], 3
        )

    cpu = sampler.usage(started + min(1.0, seconds / 4), time.time())
    value = float(rate.group(1)) if rate else None
    return {
        "rate_per_s": value,
        "threads": 1,
        "connections": connections,
        "seconds": seconds,
        "p50_ms": ms(p50),
        "p99_ms": ms(p99),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "cpu_percent": cpu,
        "cpu_ms_per_job": per_item(cpu, value or 0.0),
    }


# -- profiling -------------------------------------------------------------------------
def start_profile(pid: int, directory: Path, duration: float):
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(spy):
        log("py-spy not found; no profile")
        return None
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / PROFILE_FILE
    # Starts after locust's start-up and the warm-up; --nonblocking does not pause
    # the server to sample it; --gil keeps only samples of the thread holding the GIL
    # (where a process's Python CPU time goes: its main thread or one of its others);
    # --subprocesses samples the manager and the workers too, each stack naming its
    # process, so summarise_profile() can tell them apart.
    command = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(int(duration - 4), 2)),
        "--rate",
        "200",
        "--nonblocking",
        "--gil",
        "--threads",
        "--subprocesses",
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    time.sleep(3.0)
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=open(directory / "py-spy.log", "wb")
    ), raw


def finish_profile(spy) -> None:
    process, _ = spy
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


_LINE = re.compile(r":\d+\)$")
_FILE = re.compile(r"\((.*?)(?::\d+)?\)$")
# Frames every stack of a thread passes through: left out of the per-file shares.
_ENTRY_FILES = {
    "<frozen runpy>",
    "server/__main__.py",
    "server/cli.py",
    "server/serve.py",
    "asyncio/runners.py",
    "uvloop/__init__.py",
    "threading.py",
    "<string>",  # a spawned child's entry
    "multiprocessing/spawn.py",
    "multiprocessing/process.py",
}


# py-spy --subprocesses starts each stack with one `process PID:"command line";` per
# process from the parent down to the sampled one (a command line may hold ";").
_PROCESS = re.compile(r'^process (\d+):"[^"]*";')


def summarise_profile(raw: Path, roles: dict[int, str], top: int = 15) -> dict | None:
    """Per process role (parent, manager, workers; `roles` maps pid → role, the rest is
    "other"): its share of the samples, and within it the shares per thread, per
    function (own and inclusive time, line numbers dropped) and per source file
    (inclusive: a stack inside logging/ counts for logging/__init__.py however deep)."""
    if not raw.is_file():
        return None
    counters: dict[str, dict[str, Counter]] = {}
    totals: Counter = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        pids = []
        while m := _PROCESS.match(stack):
            pids.append(int(m.group(1)))
            stack = stack[m.end() :]
        parts = stack.split(";")
        if not pids or len(parts) < 2:
            continue
        role = roles.get(pids[-1], "other")  # the innermost process is the sampled one
        thread, *frames = parts
        totals[role] += n
        mine = counters.setdefault(
            role, {k: Counter() for k in ("threads", "self", "inclusive", "files")}
        )
        mine["threads"][re.sub(r"^thread \(\d+\): ", "", thread)] += n
        functions = [_LINE.sub(")", f) for f in frames]
        mine["self"][functions[-1]] += n
        for function in set(functions):
            mine["inclusive"][function] += n
        for name in {m.group(1) for f in frames if (m := _FILE.search(f))} - _ENTRY_FILES:
            mine["files"][name] += n
    everything = sum(totals.values())
    if everything == 0:
        return None

    def share(counter: Counter, total: int) -> list[dict]:
        return [
            {"frame": f, "percent": round(100.0 * n / total, 1)}
            for f, n in counter.most_common(top)
        ]

    return {
        "samples": everything,
        "file": str(raw),
        "processes": {
            role: {
                "samples": totals[role],
                "percent": round(100.0 * totals[role] / everything, 1),
                **{kind: share(counter, totals[role]) for kind, counter in mine.items()},
            }
            for role, mine in sorted(counters.items(), key=lambda item: -totals[item[0]])
        },
    }


# -- the whole run ------------------------------------------------------------------------
def run(plan: Plan, cache: Path, workdir: Path, profile: Path | None) -> dict:
    # Not `import locust`: it monkey-patches this process with gevent (threads become
    # greenlets and the CPU sampler would stall the runs).
    from importlib.metadata import version

    results: dict = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": plan.quick,
            "command": " ".join(["python -m tests.load.bench", *sys.argv[1:]]),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "python": platform.python_version(),
            "locust": version("locust"),
            "plan": plan.__dict__.copy(),
        },
    }
    datasets = prepare_datasets(cache, plan.big_rows)
    results["datasets"] = datasets
    exit_codes = []

    sections = set(plan.sections)
    if "startup" in sections:
        log("start-up and memory")
        results["startup"] = {}
        for label in ("demo", "big"):
            results["startup"][label] = measure_startup(
                datasets[label], plan, workdir / f"startup-{label}"
            )
            exit_codes += [r["exit_code"] for r in results["startup"][label]["runs"]]

    if "worker" in sections:
        log("in-worker cost of one job (compute.stats.answer, uncached)")
        results["in_worker_us"] = {
            label: measure_in_worker(datasets[label]["path"], plan) for label in ("demo", "big")
        }
        results["worker_path_us"] = {
            label: measure_worker_path(datasets[label]["path"], plan) for label in ("demo", "big")
        }

    ceiling_rate = ceiling_cpu = None
    if "ceiling" in sections:
        log("ceiling: GET /api/num_jobs")
        ceiling_users = max(plan.users)
        check = "check" in sections
        server = Server(Path(datasets["demo"]["path"]), plan.workers, workdir / "ceiling").start()
        single = wrk = None
        try:
            ceiling = {
                "users": ceiling_users,
                "processes": plan.processes,
                **run_locust(
                    server, "CeilingUser", ceiling_users, plan, workdir / "ceiling" / "locust"
                ),
            }
            if check and plan.ceiling_single and plan.processes > 1:
                single = {
                    "users": ceiling_users,
                    "processes": 1,
                    **run_locust(
                        server,
                        "CeilingUser",
                        ceiling_users,
                        plan,
                        workdir / "ceiling" / "locust-1",
                        processes=1,
                    ),
                }
            if check:
                wrk = run_wrk(server, plan.wrk_seconds, ceiling_users)
        finally:
            exit_codes.append(server.stop())
        results["ceiling"] = {"locust": ceiling, "locust_single_process": single, "wrk": wrk}
        ceiling_rate = ceiling["rate_per_s"]
        ceiling_cpu = ceiling["server_cpu_ms"]["total"]

    results["load"] = []
    biggest = max(plan.users)
    for workload in ("mixed", "heavy") if "load" in sections else ():
        for poll in plan.polls:
            for users in plan.users:
                name = f"{workload}-{'long' if poll == 'long' else 'poll' + poll}-{users}u"
                log(f"jobs: {name}")
                server = Server(
                    Path(datasets["demo"]["path"]), plan.workers, workdir / name
                ).start()
                spy_dir = None
                if (
                    profile is not None
                    and workload == "mixed"
                    and poll == "long"
                    and users == biggest
                ):
                    spy_dir = profile
                try:
                    row = run_locust(
                        server,
                        USER_CLASS[workload],
                        users,
                        plan,
                        workdir / name / "locust",
                        poll=poll,
                        profile=spy_dir,
                    )
                    segment_name, segment_bytes = server.segment()
                    memory = tree_memory(server.pid, segment_bytes)["pss_sum_mb"]
                finally:
                    exit_codes.append(server.stop())
                rate = row.pop("rate_per_s")
                if spy_dir is not None:
                    results["profile"] = row.pop("profile", None)
                    if results["profile"] is None:
                        log(
                            "no profile recorded (run too short, or py-spy failed: "
                            f"{spy_dir}/py-spy.log)"
                        )
                job_cpu = row["server_cpu_ms"]["total"]
                results["load"].append(
                    {
                        "workload": workload,
                        "poll": poll,
                        "users": users,
                        "jobs_per_s": rate,
                        "ratio_to_ceiling": round(rate / ceiling_rate, 3) if ceiling_rate else None,
                        # server CPU per trivial GET ÷ server CPU per job (0.5 at best)
                        "efficiency": (
                            round(ceiling_cpu / job_cpu, 3) if ceiling_cpu and job_cpu else None
                        ),
                        **row,
                        "server_memory_mb": memory,
                    }
                )
    results["meta"]["server_exit_codes"] = exit_codes
    if "check" in sections and "load" in sections and "long" in plan.polls:
        results["generator_check"] = generator_check(results, plan, datasets, workdir)
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["targets"] = evaluate(results, plan)
    return results


def generator_check(results: dict, plan: Plan, datasets: dict, workdir: Path) -> list[dict]:
    """The long-poll runs with the most users again with other numbers of locust
    processes (mixed: one and one more; heavy: one more): if the job rate does not
    follow the number of load-generator processes, their number is not the limit."""
    users = max(plan.users)
    rows = []
    for workload, others in (("mixed", {1, plan.processes + 1}), ("heavy", {plan.processes + 1})):
        main = next(
            r
            for r in results["load"]
            if r["workload"] == workload and r["poll"] == "long" and r["users"] == users
        )
        rows.append(
            {
                "workload": workload,
                "processes": plan.processes,
                "jobs_per_s": main["jobs_per_s"],
                "p50_ms": main["p50_ms"],
                "p99_ms": main["p99_ms"],
                "cpu_percent": main["cpu_percent"],
                "cpu_ms_per_job": main["cpu_ms_per_job"],
            }
        )
        if not plan.generator_check:
            continue
        for processes in sorted(others - {plan.processes}):
            name = f"generator-check-{workload}-{processes}p"
            log(f"jobs: {workload}-long-{users}u with {processes} locust process(es)")
            server = Server(Path(datasets["demo"]["path"]), plan.workers, workdir / name).start()
            try:
                row = run_locust(
                    server,
                    USER_CLASS[workload],
                    users,
                    plan,
                    workdir / name / "locust",
                    poll="long",
                    processes=processes,
                )
            finally:
                results["meta"]["server_exit_codes"].append(server.stop())
            rows.append(
                {
                    "workload": workload,
                    "processes": processes,
                    "jobs_per_s": row["rate_per_s"],
                    "p50_ms": row["p50_ms"],
                    "p99_ms": row["p99_ms"],
                    "cpu_percent": row["cpu_percent"],
                    "cpu_ms_per_job": row["cpu_ms_per_job"],
                }
            )
    return sorted(rows, key=lambda r: (r["workload"] != "mixed", r["processes"]))


def evaluate(results: dict, plan: Plan) -> list[dict]:
    targets = []

    def add(name, value, limit, passed):
        targets.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "pass": bool(passed) if value is not None else False,
            }
        )

    biggest = max(plan.users)
    for row in results["load"]:
        if row["poll"] == "long" and row["users"] == biggest:
            add(
                f"{row['workload']} {biggest}u long-poll efficiency (server CPU per trivial "
                f"GET ÷ per job) ≥ {TARGETS['efficiency']}",
                row["efficiency"],
                TARGETS["efficiency"],
                row["efficiency"] is not None and row["efficiency"] >= TARGETS["efficiency"],
            )
            add(
                f"{row['workload']} {biggest}u long-poll p99 < {TARGETS['p99_ms']:g} ms",
                row["p99_ms"],
                TARGETS["p99_ms"],
                row["p99_ms"] is not None and row["p99_ms"] < TARGETS["p99_ms"],
            )
    if "startup" in results:
        demo, big = results["startup"]["demo"], results["startup"]["big"]
        add(
            f"demo serving < {TARGETS['demo_ready_s']:g} s from start (s)",
            demo["ready_s_median"],
            TARGETS["demo_ready_s"],
            demo["ready_s_median"] < TARGETS["demo_ready_s"],
        )
        add(
            f"{big['rows']:,} rows serving < {TARGETS['big_ready_s']:g} s (s)",
            big["ready_s_median"],
            TARGETS["big_ready_s"],
            big["ready_s_median"] < TARGETS["big_ready_s"],
        )
        add(
            f"{big['rows']:,} rows parent+workers < {TARGETS['big_memory_mb']:g} MB (MB)",
            big["memory_mb"],
            TARGETS["big_memory_mb"],
            big["memory_mb"] < TARGETS["big_memory_mb"],
        )
    for label, key in (("demo", "demo_worker_us"), ("big", "big_worker_us")):
        if "worker_path_us" not in results:
            break
        median = results["worker_path_us"][label]["median_us"]
        slowest = max(results["in_worker_us"][label].values(), key=lambda r: r["median_us"])
        worst = slowest["median_us"]
        rows = results["datasets"][label]["rows"]
        add(
            f"in-worker median per job < {TARGETS[key]:g} µs on {rows:,} rows, mixed jobs "
            f"through the worker's JobRunner (µs)",
            median,
            TARGETS[key],
            median < TARGETS[key],
        )
        add(
            "  the same for the slowest endpoint, uncached (µs)",
            worst,
            TARGETS[key],
            worst < TARGETS[key],
        )
    return targets


# -- the table ---------------------------------------------------------------------------
def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def cpu_cell(row: dict) -> str:
    cpu = row.get("cpu_percent") or {}
    return "/".join(
        fmt(cpu.get(k), 0) for k in ("server_parent", "server_workers", "locust", "others")
    )


def _startup_table(results: dict) -> list[str]:
    lines: list[str] = []
    lines.append("")
    lines.append(
        "Start-up (median of runs) and memory (sum of Pss over parent, workers, "
        "manager: shared segment once)"
    )
    lines.append(
        f"  {'dataset':<22} {'rows':>10} {'load s':>8} {'ready s':>8} "
        f"{'1st job s':>9} {'segment MB':>10} {'Pss MB':>8} {'ΣRss MB':>8}"
    )
    for label, row in results["startup"].items():
        memory = max(row["runs"], key=lambda r: r["memory"]["pss_sum_mb"])["memory"]
        lines.append(
            f"  {label + ' (' + Path(results['datasets'][label]['path']).name + ')':<22.22} "
            f"{row['rows']:>10,} {fmt(row['load_s_median'], 3):>8} "
            f"{fmt(row['ready_s_median'], 3):>8} {fmt(row['first_answer_s_median'], 3):>9} "
            f"{fmt(memory['segment_mb'], 2):>10} {fmt(memory['pss_sum_mb']):>8} "
            f"{fmt(memory['rss_sum_mb']):>8}"
        )
    return lines


def _worker_table(results: dict) -> list[str]:
    lines: list[str] = []
    lines.append("")
    lines.append(
        "In-worker cost of one job: compute.stats.answer, uncached, median µs "
        "(in brackets: the statistic without JSON encoding)"
    )
    labels = list(results["in_worker_us"])
    header = "".join(
        f"{label + ' (' + format(results['datasets'][label]['rows'], ',') + ')':>26}"
        for label in labels
    )
    lines.append(f"  {'endpoint':<24}{header}")
    for endpoint in ENDPOINTS:
        cells = "".join(
            f"{fmt(results['in_worker_us'][label][endpoint]['median_us']) + ' (' + fmt(results['in_worker_us'][label][endpoint]['compute_only_median_us']) + ')':>26}"
            for label in labels
        )
        lines.append(f"  {endpoint:<24}{cells}")
    cells = "".join(
        f"{fmt(results['worker_path_us'][label]['median_us']) + ' (p99 ' + fmt(results['worker_path_us'][label]['p99_us']) + ')':>26}"
        for label in labels
    )
    lines.append(f"  {'mixed jobs, JobRunner':<24}{cells}")
    return lines


def _profile_table(profile: dict, rows: int = 8) -> list[str]:
    lines = [
        "",
        f"py-spy --gil --subprocesses on the server ({profile['samples']} samples, mixed "
        "long-poll, most users): each process's share of the GIL-holding samples, then "
        "shares within it",
    ]
    for role, mine in profile["processes"].items():
        lines.append(
            f"  {role} {mine['percent']:.0f}% of the samples; by thread: "
            + ", ".join(f"{t['frame'][:40]} {t['percent']:.0f}%" for t in mine["threads"][:4])
        )
        lines.append(f"    {'own time':<56} inclusive, by source file")
        for own, theirs in zip(mine["self"][:rows], mine["files"][:rows]):
            lines.append(
                f"    {own['percent']:5.1f}%  {own['frame'][:48]:<50} "
                f"{theirs['percent']:5.1f}%  {theirs['frame'][-40:]}"
            )
    return lines


def table(results: dict) -> str:
    lines = []
    meta = results["meta"]
    plan = meta["plan"]
    lines.append(
        f"Le Stats Sportif benchmark  {meta['date']}  {meta['machine']}  "
        f"{meta['cpus']} CPUs  locust {meta['locust']}"
        f"{'  QUICK (smoke numbers only)' if meta['quick'] else ''}"
    )
    lines.append(
        f"server: {plan['workers']} worker processes; locust: "
        f"{plan['processes']} process(es), FastHttpUser, {plan['duration']:g} s per "
        f"run, first {plan['warmup']:g} s left out; load avg at start "
        f"{meta['loadavg_start'][0]:.2f}"
    )
    lines.append(
        "CPU% = percent of one core during the measured window: server parent / "
        "server workers+manager / locust / other tenants of the machine; "
        "ms/job = server parent CPU ms per job (or request)"
    )
    lines.append(
        "efficiency = server CPU per trivial GET ÷ server CPU per job (0.5 at best: "
        "a job is two requests); server CPU = utime+stime of the parent and all "
        "its children, from /proc before and after each run"
    )
    c = results.get("ceiling")
    if c:
        lines.append("")
        lines.append(
            f"Ceiling: trivial GET /api/num_jobs, {c['locust']['users']} users/"
            f"connections{'':<6}req/s   p50 ms   p99 ms   CPU% par/wrk/loc/oth  "
            f"ms/req  server µs/req"
        )
        for label, row in (
            ("locust, same set-up as the job runs", c["locust"]),
            ("locust, one process", c.get("locust_single_process")),
            ("wrk -t1 (load generator check)", c.get("wrk")),
        ):
            if row is None:
                continue
            server_us = (row.get("server_cpu_ms") or {}).get("total")
            lines.append(
                f"  {label:<48} {fmt(row['rate_per_s']):>9} {fmt(row['p50_ms'], 2):>8} "
                f"{fmt(row['p99_ms'], 2):>8}   {cpu_cell(row):<18} "
                f"{fmt((row.get('cpu_ms_per_job') or {}).get('server_parent'), 3):>6}"
                f"  {fmt(server_us * 1000 if server_us else None):>13}"
            )
    if results["load"]:
        lines.append("")
        lines.append("End-to-end jobs (POST → checked answer), demo dataset")
        lines.append(
            f"  {'workload':<8} {'polling':<8} {'users':>5} {'jobs':>7} {'fail':>5} "
            f"{'jobs/s':>8} {'÷ceil':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   "
            f"{'CPU% par/wrk/loc/oth':<18} {'eff.':>5}  server µs/job: "
            f"total = parent + manager + workers + other"
        )
        for row in results["load"]:
            per_job = row.get("server_cpu_ms") or {}
            split = " + ".join(
                fmt(per_job[k] * 1000 if per_job.get(k) is not None else None, 0)
                for k in SERVER_ROLES
            )
            total = per_job.get("total")
            lines.append(
                f"  {row['workload']:<8} {'long' if row['poll'] == 'long' else row['poll'] + ' s':<8} "
                f"{row['users']:>5} {row['jobs']:>7,} {row['failures']:>5} "
                f"{fmt(row['jobs_per_s']):>8} {fmt(row['ratio_to_ceiling'], 2):>6} "
                f"{fmt(row['p50_ms'], 2):>8} {fmt(row['p99_ms'], 2):>8} {fmt(row['max_ms'], 1):>8}   "
                f"{cpu_cell(row):<18} {fmt(row.get('efficiency'), 2):>5}  "
                f"{fmt(total * 1000 if total is not None else None, 0)} = {split}"
            )
    check = results.get("generator_check") or []
    if len(check) > 2:
        lines.append("")
        lines.append(
            f"Load generator check: long polling, {max(plan['users'])} users, other "
            f"numbers of locust processes (CPU ms/job: parent/workers/locust)"
        )
        for row in check:
            per_job = "/".join(
                fmt(row["cpu_ms_per_job"].get(k), 2)
                for k in ("server_parent", "server_workers", "locust")
            )
            lines.append(
                f"  {row['workload']:<6} {row['processes']} process(es): "
                f"{fmt(row['jobs_per_s']):>8} jobs/s   p50 {fmt(row['p50_ms'], 2):>6} ms"
                f"   p99 {fmt(row['p99_ms'], 2):>6} ms   CPU% {cpu_cell(row):<16}"
                f" ms/job {per_job}"
            )
    if "startup" in results:
        lines.extend(_startup_table(results))
    if "in_worker_us" in results:
        lines.extend(_worker_table(results))
    if results.get("profile"):
        lines.extend(_profile_table(results["profile"]))
    lines.append("")
    lines.append("Targets")
    for target in results["targets"]:
        lines.append(
            f"  [{'PASS' if target['pass'] else 'FAIL'}] {target['target']}: "
            f"{fmt(target['value'], 2)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.load.bench",
        description=(
            "Benchmark Le Stats Sportif end to end: start-up, memory, in-worker cost, "
            "request ceiling and job throughput/latency with locust."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: one user count, short runs, a few hundred jobs",
    )
    parser.add_argument("--out", default="bench-results.json", help="JSON results file")
    parser.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE),
        help="where generated datasets are kept between runs",
    )
    parser.add_argument(
        "--workdir",
        help="server state, logs and locust output (default: a temporary directory, removed)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record py-spy on every server process (parent, manager, workers) during "
        "the mixed long-poll run with the most users",
    )
    parser.add_argument("--users", type=int, nargs="+", help="user counts to run")
    parser.add_argument("--duration", type=float, help="seconds per locust run")
    parser.add_argument("--warmup", type=float, help="seconds left out at the start")
    parser.add_argument("--processes", type=int, help="locust worker processes")
    parser.add_argument("--workers", type=int, help="server worker processes")
    parser.add_argument("--big-rows", type=int, help="rows of the generated big dataset")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        help="parts to run (default: all); `--sections ceiling load "
        "--users 16 --polls long` measures the efficiency target alone",
    )
    parser.add_argument(
        "--polls", nargs="+", choices=POLLS, help="how the job runs collect answers (default: both)"
    )
    args = parser.parse_args(argv)
    plan = make_plan(args)
    os.chdir(ROOT)
    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lestats-bench-"))
    try:
        results = run(
            plan, Path(args.cache_dir), workdir, Path(args.profile) if args.profile else None
        )
    except Exception:
        log(f"failed; server and locust output kept in {workdir}")
        raise
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
