"""Helpers for the fault tests: a mix of valid jobs with their expected answers, a
load of client threads against a real server process, and a look at its processes.

Everything here talks to one LiveServer on loopback; every loop is bounded by a stop
flag and every request by a timeout, so a test using it always ends by itself.
"""

from __future__ import annotations

import os
import random
import threading
import time
from http.client import HTTPException
from pathlib import Path

from compute.endpoints import ENDPOINTS
from compute.questions import HIGHER_IS_BETTER, LOWER_IS_BETTER
from tests.reference import Reference, assert_close
from tests.support.live import http

QUESTIONS = (*LOWER_IS_BETTER, *HIGHER_IS_BETTER)
STATES = ("Ohio", "Alabama", "National", "Guam", "Wyoming", "Virgin Islands")


class JobMix:
    """Random valid jobs and the reference answer of each (computed once per key)."""

    def __init__(self, csv: Path, seed: int, endpoints=tuple(ENDPOINTS)):
        self.reference = Reference(csv)
        self.rng = random.Random(seed)
        self.endpoints = endpoints
        self._answers: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def pick(self, rng: random.Random | None = None) -> tuple[str, dict]:
        rng = rng or self.rng
        endpoint = rng.choice(self.endpoints)
        body = {"question": rng.choice(QUESTIONS)}
        if ENDPOINTS[endpoint].needs_state:
            body["state"] = rng.choice(STATES)
        return endpoint, body

    def expected(self, endpoint: str, body: dict):
        key = (endpoint, body["question"], body.get("state"))
        with self._lock:
            if key not in self._answers:
                self._answers[key] = self.reference.answer(*key)
            return self._answers[key]

    def check(self, endpoint: str, body: dict, result: dict) -> None:
        assert result["status"] == "done", (endpoint, body, result)
        assert_close(result["data"], self.expected(endpoint, body), where=endpoint)


class ClientLoad:
    """`clients` threads, each posting random jobs and polling some of its own.

    `acknowledged` maps every job id a client was given (a 200 {"job_id"}) to what it
    asked; a thread stops at the first failure to reach the server (the server was
    killed: counted in `unreachable`) or when stop() is called. Any other surprise
    (a wrong status, a duplicate id) is raised again by stop()."""

    def __init__(
        self,
        url: str | list[str],
        mix: JobMix,
        clients: int = 6,
        seed: int = 0,
        max_jobs: int = 5000,
        polls: bool = True,
    ):
        self.polls = polls  # False: only POST (a test whose results get evicted)
        self.urls = [url] if isinstance(url, str) else list(url)  # several: round robin
        self.mix = mix
        self.acknowledged: dict[int, tuple[str, dict]] = {}
        self.done_seen: set[int] = set()
        self.refused = 0
        self.retry_after: set[str | None] = set()  # Retry-After headers of the 503s
        self.unreachable = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._threads = [
            threading.Thread(target=self._client, args=(seed * 1000 + i,), daemon=True)
            for i in range(clients)
        ]

    def start(self) -> ClientLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a client thread hangs"
        if self.failures:
            raise self.failures[0]

    def ids(self) -> set[int]:
        """The ids acknowledged so far (a copy: the clients keep adding)."""
        with self._lock:
            return set(self.acknowledged)

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[int] = []
        turn = seed
        while not self._stop.is_set() and len(self.acknowledged) < self._max_jobs:
            try:
                endpoint, body = self.mix.pick(rng)
                url = self.urls[turn % len(self.urls)]
                turn += 1
                status, answer, headers = http(f"{url}/api/{endpoint}", "POST", body)
                if status == 200:
                    with self._lock:
                        assert answer["job_id"] not in self.acknowledged, answer
                        self.acknowledged[answer["job_id"]] = (endpoint, body)
                    mine.append(answer["job_id"])
                else:
                    assert status == 503, (status, answer)
                    with self._lock:
                        self.refused += 1
                        self.retry_after.add(headers.get("Retry-After"))
                if self.polls and mine and rng.random() < 0.5:
                    job_id = rng.choice(mine)
                    status, result, _ = http(f"{url}/api/get_results/{job_id}")
                    if status == 503:  # cluster mode: Redis is restarting
                        continue
                    assert status == 200, (job_id, status, result)
                    if result["status"] == "done":
                        with self._lock:
                            self.done_seen.add(job_id)
            except (OSError, HTTPException, ValueError):
                # refused, reset, or an answer cut off (json.loads of half a body)
                with self._lock:
                    self.unreachable += 1
                return
            except BaseException as exc:  # noqa: BLE001 (reported by stop())
                with self._lock:
                    self.failures.append(exc)
                return


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass (a hang guard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process: the most resident memory it has had, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def log_text(log_file: Path) -> str:
    """The whole log, oldest first, across the rotated files (webserver.log.5 … .1)."""
    rotated = sorted(
        log_file.parent.glob(log_file.name + ".*"),
        key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
    )
    return "".join(p.read_text() for p in [*rotated, log_file] if p.exists())
