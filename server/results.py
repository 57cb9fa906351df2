"""Finished jobs' answers, one file per job id, written atomically.

`<state_dir>/jobs/<id>.json` holds the complete get_results body of a finished job
(`<id>.error.json` for a job that failed), written to a temporary file and renamed,
so a reader or a crash never sees half a result. File names are built from integers
only: no request value ever becomes part of a path.

ResultFiles is the disk side. It is small and picklable because the worker processes
write the files themselves, before they report a job done: moving those writes out
of the parent halved its CPU per job (docs/performance.md). ResultStore is the
parent's side: the files plus the bodies of recent jobs in memory, because clients
ask for a result right after it is done.
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^([1-9][0-9]*)(\.error)?\.json$")


@dataclass(frozen=True)
class ResultFiles:
    dir: str
    fsync: bool = False

    def path(self, job_id: int, ok: bool) -> str:
        return os.path.join(self.dir, f"{int(job_id)}.json" if ok
                            else f"{int(job_id)}.error.json")

    def write(self, job_id: int, ok: bool, body: bytes) -> None:
        # The pid keeps two processes that run the same job (a re-run after a worker
        # death) from sharing a temporary file.
        temporary = os.path.join(self.dir, f".{int(job_id)}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(body)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, self.path(job_id, ok))

    def commit(self) -> None:
        """Make the renames done so far durable (fsync mode): fsync of a file covers
        its data, not the directory entry that names it. Workers call it once per
        batch, before reporting the batch done."""
        if self.fsync:
            sync_directory(self.dir)

    def read(self, job_id: int, ok: bool) -> bytes:
        with open(self.path(job_id, ok), "rb") as handle:
            return handle.read()

    def scan(self) -> dict[int, bool]:
        """Finished jobs on disk (id → ok), after removing temporaries a crash left."""
        os.makedirs(self.dir, exist_ok=True)
        finished: dict[int, bool] = {}
        with os.scandir(self.dir) as entries:
            for entry in entries:
                match = _NAME.match(entry.name)
                if match:
                    finished[int(match.group(1))] = match.group(2) is None
                elif entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
        return finished

    def delete(self, items: list[tuple[int, bool]]) -> None:
        for job_id, ok in items:
            try:
                os.unlink(self.path(job_id, ok))
            except FileNotFoundError:
                pass


class ResultStore:
    """The parent's view: files on disk, recent bodies in memory.

    Bodies are shared: every job asking the same question gets the same bytes object
    (workers send a body once per question; `answers` keeps them by question, bounded
    in bytes), and `recent` maps the newest job ids to their body, bounded in count.
    """
    DIR = "jobs"

    def __init__(self, state_dir: Path, fsync: bool = False, recent: int = 100_000,
                 answer_bytes: int = 64 << 20):
        self.files = ResultFiles(str(Path(state_dir) / self.DIR), fsync)
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._recent_limit = recent
        self._answers: OrderedDict[tuple, bytes] = OrderedDict()
        self._answer_bytes = 0
        self._answer_limit = answer_bytes
        self._lock = threading.Lock()  # reads of evicted results run in executor threads

    def scan(self) -> dict[int, bool]:
        return self.files.scan()

    def remember(self, job_id: int, key: tuple, body: bytes | None) -> None:
        """Record a finished job's body (None: the body last sent for `key`)."""
        with self._lock:
            if body is None:
                body = self._answers.get(key)
                if body is None:
                    return  # no longer in memory: it will be read from its file
                self._answers.move_to_end(key)
            elif key is not None:
                old = self._answers.pop(key, None)
                self._answer_bytes += len(body) - (len(old) if old else 0)
                self._answers[key] = body
                while self._answer_bytes > self._answer_limit and self._answers:
                    self._answer_bytes -= len(self._answers.popitem(last=False)[1])
            self._recent[job_id] = body
            if len(self._recent) > self._recent_limit:
                self._recent.popitem(last=False)

    def cached(self, job_id: int) -> bytes | None:
        return self._recent.get(job_id)

    def read(self, job_id: int, ok: bool) -> bytes:
        """Blocking read of a result no longer in memory (run in an executor)."""
        return self.files.read(job_id, ok)

    def delete(self, items: list[tuple[int, bool]]) -> None:
        """Blocking removal of evicted results (run in an executor)."""
        with self._lock:
            for job_id, _ in items:
                self._recent.pop(job_id, None)
        self.files.delete(items)


def sync_directory(path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
