"""Locust users for Le Stats Sportif; point them at any deployment with --host.

    locust -f tests/load/locustfile.py --host http://127.0.0.1:5000 LongPollUser
    locust -f tests/load/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --processes 2 --host http://127.0.0.1:5000 HeavyUser --poll long

User classes (pick them by name on the command line, or with --class-picker):

- ExistingClientUser: what existing clients do: POST a job over all nine endpoints,
  then GET /api/get_results/N right away and every 0.2 s until it is done.
- LongPollUser: the same jobs, collected with GET /api/get_results/N?wait=S.
- MixedUser: random endpoint (all nine), random question and state; polling
  chosen by --poll (seconds between polls, or "long").
- HeavyUser: the heaviest endpoints (mean_by_category, states_mean,
  diff_from_mean); polling chosen by --poll.
- CeilingUser: GET /api/num_jobs only: the request rate of the server for a
  trivial request, the ceiling the job rates are compared with.

Every user runs one job at a time, back to back (a closed loop, no think time). A job
counts only when its answer arrived and passed the shape check for its endpoint
(answer_shapes.py); it is then reported to locust as a request of type JOB named after
its endpoint, with the time from the POST to the answer as its response time, so
locust's own table shows end-to-end job latency next to the HTTP requests. A wrong
status, a malformed answer or no answer within --job-timeout is a JOB failure.

With --samples-dir DIR every locust process also writes its raw samples (start
time and latency of every job, failures by reason) to DIR/<pid>.json when the test
stops: tests/load/bench.py computes exact percentiles and the rate over a
measurement window from them (locust's own percentiles are rounded to whole ms).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter

import gevent
import gevent.lock
from locust import FastHttpUser, constant, events, task

try:  # run with `python -m locust` from the project root
    from tests.load import answer_shapes
except ImportError:  # run by path from elsewhere: locust puts this directory on sys.path
    import answer_shapes  # type: ignore[no-redef]

ALL_ENDPOINTS = (
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
HEAVY_ENDPOINTS = ("mean_by_category", "states_mean", "diff_from_mean")
RESULTS_NAME = "/api/get_results/[id]"


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    group = parser.add_argument_group("Le Stats Sportif")
    group.add_argument(
        "--poll",
        default="0.2",
        help="MixedUser/HeavyUser: seconds between polls of get_results, "
        "or 'long' for long polling (default 0.2)",
    )
    group.add_argument(
        "--long-poll-wait",
        type=float,
        default=5.0,
        help="the ?wait= of a long poll, in seconds (default 5)",
    )
    group.add_argument(
        "--job-timeout",
        type=float,
        default=60.0,
        help="a job without an answer after this many seconds fails",
    )
    group.add_argument(
        "--max-jobs",
        type=int,
        default=0,
        help="stop starting jobs after this many per locust process "
        "(0 = no limit; bounds smoke runs)",
    )
    group.add_argument(
        "--samples-dir",
        default="",
        help="write raw samples of this process to DIR/<pid>.json at the end",
    )


# -- per-process state ------------------------------------------------------------
_context: answer_shapes.Context | None = None
_context_lock = gevent.lock.Semaphore()
_samples: list[tuple[str, float, float]] = []  # (endpoint, wall-clock start, seconds)
_failures: Counter = Counter()  # "endpoint: reason" → count
_started = 0
_cpu_warning = False


def _option(environment, name: str, default):
    options = getattr(environment, "parsed_options", None)
    value = getattr(options, name, None) if options is not None else None
    return default if value is None else value


@events.cpu_warning.add_listener
def _on_cpu_warning(environment, cpu_usage, **_kw) -> None:
    global _cpu_warning
    _cpu_warning = True


def _write_samples(environment, **_kw) -> None:
    directory = _option(environment, "samples_dir", "")
    if not directory or (not _samples and not _failures):
        return
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{os.getpid()}.json")
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(
            {
                "pid": os.getpid(),
                "samples": _samples,
                "failures": dict(_failures),
                "cpu_warning": _cpu_warning,
            },
            handle,
        )
    os.replace(temporary, path)


# test_stop fires on every node (also on --processes workers); quitting covers a
# process that stops without a test_stop. Writing twice just rewrites the same file.
events.test_stop.add_listener(_write_samples)
events.quitting.add_listener(_write_samples)


class JobFailed(Exception):
    """A job that did not end with a well-shaped answer."""


class _JobUser(FastHttpUser):
    """One job at a time: POST, then collect the answer by polling or long polling."""

    abstract = True
    wait_time = constant(0)
    endpoints: tuple[str, ...] = ALL_ENDPOINTS
    poll: str | None = None  # None: the --poll option

    def on_start(self) -> None:
        self._poll = self.poll or str(_option(self.environment, "poll", "0.2"))
        self._long = self._poll == "long"
        self._interval = 0.0 if self._long else float(self._poll)
        self._wait = float(_option(self.environment, "long_poll_wait", 5.0))
        self._timeout = float(_option(self.environment, "job_timeout", 60.0))
        self._max_jobs = int(_option(self.environment, "max_jobs", 0))

    def _context(self) -> answer_shapes.Context:
        global _context
        if _context is None:
            with _context_lock:
                if _context is None:
                    states = self.client.get("/api/states", name="setup /api/states")
                    questions = self.client.get("/api/questions", name="setup /api/questions")
                    _context = answer_shapes.Context.from_api(states.json(), questions.json())
        return _context

    @task
    def job(self) -> None:
        global _started
        if self._max_jobs and _started >= self._max_jobs:
            gevent.sleep(0.5)
            return
        try:
            ctx = self._context()
        except Exception as exc:  # the deployment is not answering yet: retry later
            _failures[f"setup: {type(exc).__name__}: {exc}"[:200]] += 1
            gevent.sleep(1.0)
            return
        _started += 1
        endpoint = random.choice(self.endpoints)
        needs_direction = endpoint in answer_shapes.NEEDS_DIRECTION
        question = random.choice(ctx.ranked_questions if needs_direction else ctx.questions)
        state = random.choice(ctx.states) if endpoint in answer_shapes.NEEDS_STATE else None
        self.run_job(ctx, endpoint, question, state)

    def run_job(self, ctx, endpoint: str, question: str, state: str | None) -> None:
        body = {"question": question} if state is None else {"question": question, "state": state}
        wall = time.time()
        start = time.perf_counter()
        try:
            job_id = self._post(endpoint, body)
            answer, size = self._collect(job_id, start, endpoint, ctx, question, state)
        except JobFailed as exc:
            _failures[f"{endpoint}: {exc}"[:200]] += 1
            self._report(endpoint, start, 0, exc)
            return
        except Exception as exc:  # connection errors and the like
            _failures[f"{endpoint}: {type(exc).__name__}"] += 1
            self._report(endpoint, start, 0, exc)
            return
        _samples.append((endpoint, wall, answer - start))
        self._report(endpoint, start, size, None, answer)

    def _report(self, endpoint, start, size, exception, end=None) -> None:
        end = time.perf_counter() if end is None else end
        self.environment.events.request.fire(
            request_type="JOB",
            name=endpoint,
            response_time=(end - start) * 1000.0,
            response_length=size,
            exception=exception,
            context={},
        )

    def _post(self, endpoint: str, body: dict) -> int:
        with self.client.post(
            f"/api/{endpoint}", json=body, name=f"/api/{endpoint}", catch_response=True
        ) as response:
            if response.status_code != 200:
                reason = f"POST answered {response.status_code}"
                response.failure(reason)
                raise JobFailed(reason)
            try:
                return int(response.json()["job_id"])
            except (ValueError, KeyError, TypeError):
                response.failure("POST answer has no job_id")
                raise JobFailed("POST answer has no job_id") from None

    def _collect(self, job_id: int, start: float, endpoint, ctx, question, state):
        """(time the answer arrived, its size) once the job is done and well-shaped."""
        if self._long:
            path, name = f"/api/get_results/{job_id}?wait={self._wait:g}", RESULTS_NAME + "?wait"
        else:
            path, name = f"/api/get_results/{job_id}", RESULTS_NAME
        deadline = start + self._timeout
        first = True
        while True:
            if not self._long and not first:
                gevent.sleep(self._interval)
            first = False
            with self.client.get(path, name=name, catch_response=True) as response:
                arrived = time.perf_counter()
                if response.status_code != 200:
                    reason = f"get_results answered {response.status_code}"
                    response.failure(reason)
                    raise JobFailed(reason)
                try:
                    result = response.json()
                except ValueError:
                    response.failure("get_results answer is not JSON")
                    raise JobFailed("get_results answer is not JSON") from None
                status = result.get("status") if isinstance(result, dict) else None
                if status == "running":
                    if arrived > deadline:
                        response.success()
                        raise JobFailed(f"no answer within {self._timeout:g} s")
                    continue
                problem = answer_shapes.check_body(endpoint, result, ctx, question, state)
                if problem is not None:
                    response.failure(problem)
                    raise JobFailed(problem)
                return arrived, len(response.content or b"")


class ExistingClientUser(_JobUser):
    """Existing clients: all nine endpoints, polling every 0.2 s."""

    poll = "0.2"


class LongPollUser(_JobUser):
    """All nine endpoints, collected by long polling."""

    poll = "long"


class MixedUser(_JobUser):
    """All nine endpoints, random question and state; polling from --poll."""


class HeavyUser(_JobUser):
    """mean_by_category, states_mean and diff_from_mean; polling from --poll."""

    endpoints = HEAVY_ENDPOINTS


class CeilingUser(FastHttpUser):
    """The trivial GET /api/num_jobs, back to back: the server's request ceiling."""

    wait_time = constant(0)

    @task
    def num_jobs(self) -> None:
        wall = time.time()
        start = time.perf_counter()
        with self.client.get("/api/num_jobs", catch_response=True) as response:
            end = time.perf_counter()
            if response.status_code != 200 or b"num_jobs" not in (response.content or b""):
                response.failure(f"num_jobs answered {response.status_code}")
                _failures[f"num_jobs: status {response.status_code}"] += 1
                return
        _samples.append(("num_jobs", wall, end - start))
