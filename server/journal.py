"""The job journal: every accepted job is on disk before its id is handed out.

One JSON line per accepted job in `<state_dir>/journal.jsonl`. A job is finished when
its result file exists (server.results), so at start-up the journal's jobs without a
result are exactly the jobs a crash interrupted; they are run again (except the jobs
whose result the retention limit deleted: an `{"evicted": [...]}` line names them
first). Start-up also compacts the journal to a `{"next_id": N}` line plus those
unfinished jobs, so it never grows past one run and ids keep increasing across
restarts.

Durability: a line is written with one os.write before the client gets its id, so it
survives a crash of the process (it is in the kernel's page cache). With fsync on, the
client gets its id only after an fsync of the journal; concurrent requests share one
fsync (group commit) so that this costs latency, not throughput.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from compute.endpoints import YEAR_FIELDS
from compute.messages import Job
from server import logsetup
from server.results import sync_directory

log = logsetup.get("journal")


@dataclass
class Recovery:
    next_id: int
    unfinished: list[Job]


class JobJournal:
    FILE = "journal.jsonl"

    def __init__(self, state_dir: Path, fsync: bool = False):
        self.path = Path(state_dir) / self.FILE
        self.fsync = fsync
        self._fd: int | None = None
        self._written = 0
        self._synced = 0
        self._sync_task: asyncio.Future | None = None

    def open(self, finished_ids, highest_finished: int) -> Recovery:
        """Read what the last run left, compact it, and open for appending."""
        next_id, jobs, evicted, torn = 1, {}, set(), 0
        try:
            with open(self.path, "rb") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        if "next_id" in record:
                            next_id = max(next_id, int(record["next_id"]))
                        elif "evicted" in record:
                            evicted.update(int(i) for i in record["evicted"])
                        else:
                            job = Job(int(record["id"]), record["endpoint"],
                                      record["question"], record.get("state"),
                                      _year(record.get("year_start")),
                                      _year(record.get("year_end")))
                            jobs[job.id] = job
                            next_id = max(next_id, job.id + 1)
                    except (ValueError, KeyError, TypeError):
                        torn += 1  # a line cut by a power loss: that job never got its id
        except FileNotFoundError:
            pass
        if torn:
            log.warning("journal %s: skipped %d unreadable line(s)", self.path, torn)
        next_id = max(next_id, highest_finished + 1)
        unfinished = [job for job_id, job in sorted(jobs.items())
                      if job_id not in finished_ids and job_id not in evicted]
        self._compact(next_id, unfinished)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return Recovery(next_id, unfinished)

    def _compact(self, next_id: int, unfinished: list[Job]) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(_line({"next_id": next_id}))
            for job in unfinished:
                handle.write(_record(job))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        sync_directory(self.path.parent)  # the rename, and the jobs/ directory

    def append(self, job: Job) -> None:
        """One write of one line: never torn by a crash of this process."""
        os.write(self._fd, _record(job))
        self._written += 1

    def evicted(self, ids: list[int]) -> None:
        """Record finished jobs whose results are about to be deleted (before the
        deletion): without a result file they would otherwise look unfinished to the
        next start and run again."""
        os.write(self._fd, _line({"evicted": ids}))

    async def durable(self) -> None:
        """Return once every line appended so far is on stable storage (fsync mode)."""
        if not self.fsync:
            return
        target = self._written
        while self._synced < target:
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._sync_task)

    async def _sync(self) -> None:
        covered = self._written
        try:
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, self._fd)
            self._synced = covered
        finally:
            self._sync_task = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _record(job: Job) -> bytes:
    record = {"id": job.id, "endpoint": job.endpoint, "question": job.question,
              "state": job.state}
    # A year range only when the job has one: the lines of the original nine
    # statistics stay as they were.
    for name in YEAR_FIELDS:
        if getattr(job, name) is not None:
            record[name] = getattr(job, name)
    return _line(record)


def _year(value) -> int | None:
    return None if value is None else int(value)
