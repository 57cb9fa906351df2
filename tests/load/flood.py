"""A flood of job POSTs far beyond the queue bound, from one asyncio aiohttp client.

    python -m tests.load.flood                      # 100,000 jobs, 256 connections
    python -m tests.load.flood --requests 20000 --max-queue 200 --concurrency 200

Starts its own server (a real `python -m server serve` process on a free loopback
port, synthetic data, a temporary state dir) unless --url names a running one (then
--pid gives its parent pid for the memory figure). Prints how many jobs were accepted
(200) and refused (503, each with Retry-After), whether anything else happened
(other statuses, client errors: must be none), the seconds taken, and the parent's
peak resident memory (VmHWM) before and after the flood. tests/api/test_backpressure.py
runs a smaller one. Only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from compute.questions import LOWER_IS_BETTER

BODY = json.dumps({"question": LOWER_IS_BETTER[1], "state": "Ohio"}).encode()
ENDPOINTS = ("state_mean", "best5", "mean_by_category", "global_mean")


@dataclass
class Flood:
    accepted: list[int] = field(default_factory=list)
    refused: int = 0
    refused_without_retry_after: int = 0
    other: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    peak_rss_before_kib: int = 0
    peak_rss_kib: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.accepted) + self.refused + sum(self.other.values())} requests "
            f"in {self.seconds:.1f} s: {len(self.accepted)} accepted, {self.refused} "
            f"refused with 503 (+Retry-After), other {dict(self.other) or 0}; parent "
            f"peak RSS {self.peak_rss_before_kib / 1024:.1f} MiB before, "
            f"{self.peak_rss_kib / 1024:.1f} MiB after"
        )


def peak_rss_kib(pid: int | None) -> int:
    if not pid:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def flood(
    url: str, requests: int, concurrency: int, pid: int | None = None, timeout: float = 60.0
) -> Flood:
    """POST `requests` jobs over `concurrency` connections, as fast as they go."""
    result = Flood(peak_rss_before_kib=peak_rss_kib(pid))
    numbers = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    headers = {"Content-Type": "application/json"}

    async def one_connection(session: aiohttp.ClientSession) -> None:
        for number in numbers:
            endpoint = ENDPOINTS[number % len(ENDPOINTS)]
            try:
                async with session.post(
                    f"{url}/api/{endpoint}", data=BODY, headers=headers
                ) as response:
                    body = await response.read()
                    if response.status == 200:
                        result.accepted.append(json.loads(body)["job_id"])
                    elif response.status == 503:
                        result.refused += 1
                        if "Retry-After" not in response.headers:
                            result.refused_without_retry_after += 1
                    else:
                        result.other[f"HTTP {response.status}"] += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                result.other[type(exc).__name__] += 1

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(one_connection(session) for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    result.peak_rss_kib = peak_rss_kib(pid)
    return result


async def drained(url: str, timeout: float = 120.0) -> bool:
    """Wait until the server has no job queued or running (a hang guard, not a timing)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{url}/api/num_jobs") as response:
                if (await response.json())["num_jobs"] == 0:
                    return True
            await asyncio.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--max-queue",
        type=int,
        default=10_000,
        help="LESTATS_MAX_QUEUE of the server this script starts",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url", help="flood a running server on loopback instead")
    parser.add_argument("--pid", type=int, help="its parent pid, for the memory figure")
    args = parser.parse_args(argv)
    if args.url:
        if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            parser.error("--url must be a loopback address")
        result = asyncio.run(flood(args.url, args.requests, args.concurrency, args.pid))
        print(result.summary())
        return 0 if not result.other else 1

    from compute import demo
    from tests.support.live import start_server

    with tempfile.TemporaryDirectory(prefix="lestats-flood-") as scratch:
        scratch = Path(scratch)
        data = demo.write(scratch / "demo.csv", count=4000, seed=3)
        server = start_server(
            scratch, data=data, workers=args.workers, env={"LESTATS_MAX_QUEUE": str(args.max_queue)}
        )
        try:
            result = asyncio.run(flood(server.url, args.requests, args.concurrency, server.pid))
            print(result.summary())
            finished = asyncio.run(drained(server.url))
            print(
                f"accepted jobs all finished: {finished}; ids unique: "
                f"{len(set(result.accepted)) == len(result.accepted)}"
            )
        finally:
            code = server.stop()
        ok = not result.other and finished and code == 0 and not result.refused_without_retry_after
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
