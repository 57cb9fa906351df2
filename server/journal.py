"""The job journal: every accepted job is on disk before its id is handed out.

One JSON line per accepted job in `<state_dir>/journal.jsonl`, with the fingerprint of
the data it was accepted under. A job is finished when its result file exists
(server.results), so at start-up the journal's jobs without a result are exactly the
jobs a crash interrupted; they are run again (except the jobs whose result the
retention limit deleted: an `{"evicted": [...]}` line names them first). Start-up also
compacts the journal to a `{"next_id": N}` line plus those unfinished jobs, so it never
grows past one run and ids keep increasing across restarts.

Durability: a line is written with one os.write before the client gets its id, so it
survives a crash of the process (it is in the kernel's page cache). With fsync on, the
client gets its id only after an fsync of the journal; concurrent requests share one
fsync (group commit) so that this costs latency, not throughput.

Faults (issue 8, items 2 and 13): a write that fails or is cut short (ENOSPC) raises
OSError and leaves no part of its line behind — the file is truncated back to the end
of its last whole line before anything else is appended, so a later line is never
glued to a torn one. Reading is strict: a line whose values are not what this module
writes (1e999, a string id, a list...) is skipped with a warning, but the id of a
torn job line is still read from its first bytes, so that id is never handed out
again. An id beyond MAX_JOB_ID (18 digits) stops start-up with one line rather than
being clamped: clamping could hand out again ids that clients already hold.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from compute.endpoints import YEAR_FIELDS
from compute.messages import Job
from server import logsetup
from server.results import sync_directory

log = logsetup.get("journal")

# The largest id get_results accepts (server/validation.py: at most 18 digits).
MAX_JOB_ID = 10**18 - 1
_TORN_ID = re.compile(rb'\{"id":([1-9][0-9]{0,17})[,}]')


class JournalError(Exception):
    """The journal cannot be used; the message is one line for the operator."""


@dataclass
class Recovery:
    next_id: int
    unfinished: list[Job]
    # id → fingerprint of the data each unfinished job was accepted under (None: a
    # line written before fingerprints were recorded).
    datasets: dict[int, str | None] = field(default_factory=dict)


class JobJournal:
    FILE = "journal.jsonl"

    def __init__(self, state_dir: Path, fsync: bool = False):
        self.path = Path(state_dir) / self.FILE
        self.fsync = fsync
        self.dataset: str | None = None  # fingerprint recorded with every new job
        self._fd: int | None = None
        self._size = 0  # where the last whole line ends
        self._torn = False  # bytes past _size that a failed write left
        self._written = 0
        self._synced = 0
        self._sync_task: asyncio.Future | None = None

    def open(self, finished_ids, highest_finished: int) -> Recovery:
        """Read what the last run left, compact it, and open for appending."""
        next_id, jobs, datasets, evicted, damaged = 1, {}, {}, set(), 0
        try:
            with open(self.path, "rb") as handle:
                for line in handle:
                    try:
                        kind, value = _parse(line)
                    except (ValueError, KeyError, TypeError, RecursionError):
                        damaged += 1  # a line cut by a power loss or a full disk
                        torn = _TORN_ID.match(line)
                        if torn:  # its job never got its id, but may have: skip it
                            next_id = max(next_id, int(torn.group(1)) + 1)
                        continue
                    if kind == "next_id":
                        next_id = max(next_id, value)
                    elif kind == "evicted":
                        evicted.update(value)
                    else:
                        job, dataset = value
                        jobs[job.id] = job
                        datasets[job.id] = dataset
                        next_id = max(next_id, job.id + 1)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JournalError(f"{self.path} cannot be read ({exc.strerror or exc})") from None
        if damaged:
            log.warning("journal %s: skipped %d unreadable line(s)", self.path, damaged)
        next_id = max(next_id, highest_finished + 1)
        if next_id > MAX_JOB_ID:
            raise JournalError(
                f"{self.path}: the next job id would be {next_id}, beyond the largest "
                f"id clients can ask for ({MAX_JOB_ID}); the journal or a result file "
                "name is damaged — move the state dir aside to start afresh"
            )
        unfinished = [
            job
            for job_id, job in sorted(jobs.items())
            if job_id not in finished_ids and job_id not in evicted
        ]
        datasets = {job.id: datasets[job.id] for job in unfinished}
        try:
            self._compact(next_id, unfinished, datasets)
        except OSError as exc:
            # A full disk must not keep a server from starting and serving what it has:
            # keep the old journal as it is, minus a torn last line (truncating needs
            # no space). Its lines give the next start the same answer.
            log.warning(
                "journal %s: cannot compact (%s); appending to it as it is",
                self.path,
                exc.strerror or exc,
            )
            self._open_uncompacted()
        else:
            self._open_for_append()
        return Recovery(next_id, unfinished, datasets)

    def _compact(
        self, next_id: int, unfinished: list[Job], datasets: dict[int, str | None]
    ) -> None:
        temporary = self.path.with_suffix(".tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(_line({"next_id": next_id}))
                for job in unfinished:
                    handle.write(_record(job, datasets.get(job.id)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError:
            _remove(temporary)
            raise
        sync_directory(self.path.parent)  # the rename, and the jobs/ directory

    def _open_for_append(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                f"{self.path} cannot be opened for writing ({exc.strerror or exc})"
            ) from None
        self._size = os.fstat(self._fd).st_size

    def _open_uncompacted(self) -> None:
        self._open_for_append()
        with open(self.path, "rb") as handle:
            data = handle.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            self._size, self._torn = whole, True
            try:
                self._repair()
            except OSError as exc:
                raise JournalError(
                    f"{self.path}: cannot cut its torn last line ({exc.strerror or exc})"
                ) from None

    def append(self, job: Job) -> None:
        """One write of one whole line, or OSError and nothing written."""
        self._write(_record(job, self.dataset))
        self._written += 1

    def evicted(self, ids: list[int]) -> None:
        """Record finished jobs whose results are about to be deleted (before the
        deletion): without a result file they would otherwise look unfinished to the
        next start and run again."""
        self._write(_line({"evicted": ids}))

    def _write(self, data: bytes) -> None:
        if self._torn:
            self._repair()
        written = os.write(self._fd, data)
        if written < len(data):  # ENOSPC part-way: the rest would fail the same way
            self._torn = True
            try:
                self._repair()
            except OSError:
                pass  # retried before the next write, which cannot happen before
            raise OSError(28, os.strerror(28) + f" ({written} of {len(data)} bytes)")
        self._size += written

    def _repair(self) -> None:
        """Cut what a failed write left after the last whole line."""
        os.ftruncate(self._fd, self._size)
        self._torn = False

    def repair(self) -> None:
        """Cut a torn tail a failed write left, if any (OSError if still impossible)."""
        if self._torn:
            self._repair()

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


def _parse(line: bytes):
    """(kind, value) of one journal line, or ValueError/KeyError/TypeError when it is
    not exactly what _line/_record write."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise TypeError("not an object")
    if "next_id" in record:
        return "next_id", _id(record["next_id"])
    if "evicted" in record:
        return "evicted", [_id(i) for i in record["evicted"]]
    question, endpoint, state = record["question"], record["endpoint"], record.get("state")
    dataset = record.get("dataset")
    if not (
        isinstance(question, str)
        and isinstance(endpoint, str)
        and (state is None or isinstance(state, str))
        and (dataset is None or isinstance(dataset, str))
    ):
        raise TypeError("a field of the wrong type")
    job = Job(
        _id(record["id"]),
        endpoint,
        question,
        state,
        _year(record.get("year_start")),
        _year(record.get("year_end")),
    )
    return "job", (job, dataset)


def _id(value) -> int:
    """A job id as written: a positive JSON integer (not 1e999, not "7", not true).
    One beyond MAX_JOB_ID is read as it is, and open() refuses to go on."""
    if type(value) is not int or value < 1:
        raise ValueError(f"not a job id: {value!r}")
    return value


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _record(job: Job, dataset: str | None) -> bytes:
    record = {"id": job.id, "endpoint": job.endpoint, "question": job.question, "state": job.state}
    # A year range only when the job has one: the lines of the original nine
    # statistics stay as they were.
    for name in YEAR_FIELDS:
        if getattr(job, name) is not None:
            record[name] = getattr(job, name)
    if dataset is not None:
        record["dataset"] = dataset
    return _line(record)


def _year(value) -> int | None:
    """A year as written: absent, or a JSON integer."""
    if value is not None and type(value) is not int:
        raise TypeError(f"not a year: {value!r}")
    return value
