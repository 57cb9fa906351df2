"""The worker node: processes that take jobs from the Redis stream and answer them.

Every process reads batches with XREADGROUP from the stream of its dataset's
fingerprint, answers them with the embedded mode's JobRunner (same memo, same body
bytes) and finishes each batch with one FINISH script (result, state, XACK, XDEL,
PUBLISH). Between batches it runs the reaper: entries that another consumer has held
for longer than claim_timeout (it died, or was stopped) are taken over with
XAUTOCLAIM and run again; an entry already delivered MAX_ATTEMPTS times to consumers
that went silent is abandoned with an error answer (a poison job must not take the
cluster's workers down one after the other).

NodePool starts these processes for `lestats worker` and for a front-end's own
`--workers N`, replaces one that dies, and stops them: a stop lets each process finish
and acknowledge the batch it holds, then exit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from typing import Any

from redis.exceptions import ResponseError

from compute.messages import Job, Outcome
from compute.shared import SharedDataset, SharedHandle
from server import logsetup
from server.cluster import broker
from server.pool import worker

log = logsetup.get("node")

MAX_ATTEMPTS = 3
MAX_BATCH = 64
FORGET_AFTER = 10  # claim timeouts without a read: a consumer that is gone
BLOCK_MS = 500  # a blocked read returns this often to look at the stop flag
RECONNECT_PAUSE = (0.1, 2.0)  # first and longest pause between attempts to reach Redis


class Consumer:
    """One worker process's side of the stream (used by tests without processes too)."""

    def __init__(
        self, url: str, fingerprint: str, name: str, claim_timeout: float, max_results: int
    ):
        self.redis = broker.sync_client(url, socket_timeout=BLOCK_MS / 1000 + 2)
        self.fingerprint = fingerprint
        self.stream = broker.stream(fingerprint)
        self.name = name
        self.claim_ms = int(claim_timeout * 1000)
        self.max_results = max_results
        self._finish = self.redis.register_script(broker.FINISH)

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, broker.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # BUSYGROUP: it exists already
                raise

    def read(self) -> list[tuple[str, Job]]:
        try:
            reply = self.redis.xreadgroup(
                broker.GROUP, self.name, {self.stream: ">"}, count=MAX_BATCH, block=BLOCK_MS
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # Redis lost its data (no AOF): start the group again
            return []
        return [entry for _, entries in reply or () for entry in _jobs(entries)]

    def reap(self) -> tuple[list[tuple[str, Job]], int]:
        """Take over what silent consumers hold: (entries to run, entries abandoned).
        Consumers that hold nothing and have not read for a long time (processes that
        are gone) are removed, so the group does not grow with every restart."""
        for consumer in self.redis.xinfo_consumers(self.stream, broker.GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > FORGET_AFTER * self.claim_ms:
                self.redis.xgroup_delconsumer(self.stream, broker.GROUP, consumer["name"])
        idle = self.redis.xpending_range(
            self.stream, broker.GROUP, min="-", max="+", count=MAX_BATCH, idle=self.claim_ms
        )
        if not idle:
            return [], 0
        poison = [p["message_id"] for p in idle if p["times_delivered"] >= MAX_ATTEMPTS]
        body = worker.error_body(
            f"the job was running in {MAX_ATTEMPTS} worker processes "
            "that stopped answering; it was abandoned"
        )
        for entry_id in poison:
            found = _jobs(self.redis.xrange(self.stream, entry_id, entry_id))
            job_id = found[0][1].id if found else 0  # 0: deleted meanwhile, just ack it
            self.finish([entry_id], [Outcome(job_id, False, body)])
        _, claimed, _ = self.redis.xautoclaim(
            self.stream, broker.GROUP, self.name, self.claim_ms, start_id="0-0", count=MAX_BATCH
        )
        return _jobs(claimed), len(poison)

    def finish(self, entry_ids: list[str], outcomes: list[Outcome]) -> int:
        """Store the outcomes of these stream entries (one FINISH script)."""
        args: list = [broker.GROUP, broker.JOB, self.max_results]
        for entry, outcome in zip(entry_ids, outcomes):
            args += [entry, outcome.id, 1 if outcome.ok else 0, outcome.body]
        return self._finish(keys=broker.finish_keys(self.fingerprint), args=args)


def _jobs(entries) -> list[tuple[str, Job]]:
    jobs = []
    for entry_id, fields in entries:
        if not fields:
            continue  # deleted since it was delivered (7.0 reports such entries)
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        location = fields[b"location"].decode()
        jobs.append(
            (
                entry,
                Job(
                    int(fields[b"id"]),
                    fields[b"endpoint"].decode(),
                    fields[b"question"].decode(),
                    location or None,
                    *broker.parse_years(fields.get(b"years")),
                ),
            )
        )
    return jobs


def process_main(
    index: int,
    handle: SharedHandle,
    url: str,
    fingerprint: str,
    claim_timeout: float,
    max_results: int,
    stop,
) -> None:
    """Entry point of a worker process. The node's parent decides when it stops: `stop`
    is the read end of a pipe that turns readable (EOF) when the parent closes its end
    or dies; signals sent to the whole process group are ignored here."""
    worker.quiet_child()
    handler = logging.StreamHandler(sys.stderr)  # the node's output, next to its own
    handler.setFormatter(logsetup.FORMATTER)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    runner = worker.JobRunner(SharedDataset.attach(handle))
    consumer = Consumer(
        url, fingerprint, f"{socket.gethostname()}-{os.getpid()}", claim_timeout, max_results
    )
    pause = RECONNECT_PAUSE[0]
    held: list = []  # a batch answered but not yet finished in Redis
    next_reap = 0.0
    while not stop.poll():
        try:
            if held:
                consumer.finish(*held)
                held = []
            if time.monotonic() >= next_reap:
                next_reap = time.monotonic() + claim_timeout / 2
                entries, abandoned = consumer.reap()
                if abandoned:
                    log.error(
                        "abandoned %d job(s) delivered %d times to workers that stopped answering",
                        abandoned,
                        MAX_ATTEMPTS,
                    )
                if entries:
                    log.warning(
                        "took over %d job(s) from workers that stopped answering", len(entries)
                    )
            else:
                entries = consumer.read()
            if entries:
                outcomes = [runner.run(job) for _, job in entries]
                for outcome in outcomes:
                    if outcome.detail:
                        log.error("job_id=%d failed: %s", outcome.id, outcome.detail)
                held = [[entry for entry, _ in entries], outcomes]
                consumer.finish(*held)
                held = []
            pause = RECONNECT_PAUSE[0]
        except broker.UNREACHABLE as exc:  # unreachable or restarting: wait, try again
            log.warning("redis unavailable (%s); retrying in %.1f s", exc, pause)
            stop.poll(pause)
            pause = min(pause * 2, RECONNECT_PAUSE[1])
            with contextlib.suppress(*broker.UNREACHABLE):
                consumer.ensure_group()
    if held:  # stopping with an answered batch Redis has not taken: one last attempt
        try:
            consumer.finish(*held)
        except broker.UNREACHABLE:
            log.warning(
                "stopping before redis took the last batch; another worker "
                "will run it after claim_timeout"
            )


class NodePool:
    """The worker processes of one node, attached to one shared dataset."""

    def __init__(
        self,
        handle: SharedHandle,
        count: int,
        url: str,
        fingerprint: str,
        claim_timeout: float,
        max_results: int,
    ):
        self._handle = handle
        self._count = count
        self._args = (url, fingerprint, claim_timeout, max_results)
        self._ctx = mp.get_context("spawn")
        # A pipe, not a multiprocessing Event: an Event is five named semaphores in
        # /dev/shm, which a node killed with its resource tracker (kill -9 of the
        # process group) leaves behind for good. Closing the write end, or the parent's
        # death, is the stop.
        self._stop, self._stopping = self._ctx.Pipe(duplex=False)
        self._processes: dict[int, Any] = {}  # index → spawned process
        self.deaths = 0

    def start(self) -> None:
        for index in range(self._count):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        process = self._ctx.Process(
            target=process_main,
            name=f"lestats-node-{index}",
            args=(index, self._handle, *self._args, self._stop),
            daemon=True,
        )
        process.start()
        self._processes[index] = process

    def replace_dead(self) -> None:
        """Start a new process for each one that died (its jobs are reclaimed by the
        reaper after claim_timeout)."""
        if self._stopping.closed:
            return
        for index, process in list(self._processes.items()):
            if process.exitcode is not None:
                self.deaths += 1
                log.error(
                    "worker process %d (pid %s) died with exit code %s; starting another",
                    index,
                    process.pid,
                    process.exitcode,
                )
                self._spawn(index)

    def stop_blocking(self, timeout: float = 30.0) -> None:
        """Let each process finish and acknowledge its batch, then exit."""
        self._stopping.close()
        deadline = time.monotonic() + timeout
        for process in self._processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)

    async def stop(self, timeout: float = 30.0) -> None:
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.stop_blocking, timeout)

    def pids(self) -> dict:
        return {"workers": [p.pid for p in self._processes.values()]}


def run(settings) -> int:
    """`lestats worker`: load the data, share it, run the processes until SIGTERM."""
    from compute.dataset import DataError, load_csv, release_memory
    from compute.shared import reclaim_stale_segments
    from server import datasource

    writer = logsetup.configure(settings.log_file)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        for name in reclaim_stale_segments():
            log.warning("removed shared memory %s left by a process that no longer runs", name)
        try:
            path = datasource.resolve(settings.data)
            dataset = load_csv(path)
        except DataError as exc:
            log.error("cannot start: %s", exc)
            return 2
        mark = dataset.fingerprint
        shared = SharedDataset.create(dataset)
        del dataset  # the processes read the shared copy
        try:
            release_memory()
            try:
                with broker.sync_client(settings.broker) as client:
                    recorded = broker.register_cluster(client, mark)
            except broker.UNREACHABLE as exc:
                log.error(
                    "cannot start: redis at %s is unreachable (%s)",
                    broker.describe(settings.broker),
                    exc,
                )
                return 2
            if recorded.decode() != mark:
                log.error(
                    "cannot start: the data in %s (fingerprint %s) differs from "
                    "the cluster's (%s); this node would answer on other data",
                    path,
                    mark,
                    recorded.decode(),
                )
                return 2
            pool = NodePool(
                shared.handle,
                settings.worker_count,
                settings.broker,
                mark,
                settings.claim_timeout,
                settings.max_results,
            )
            pool.start()
            log.info(
                "worker node ready: %d processes on %s (fingerprint %s), broker %s",
                settings.worker_count,
                path,
                mark,
                broker.describe(settings.broker),
                extra=logsetup.CONSOLE,
            )
            while not stopping:
                time.sleep(0.2)
                pool.replace_dead()
            log.info("stopping: each process finishes its batch", extra=logsetup.CONSOLE)
            pool.stop_blocking()
        finally:
            shared.release()
        log.info("stopped cleanly", extra=logsetup.CONSOLE)
        return 0
    finally:
        writer.stop()
