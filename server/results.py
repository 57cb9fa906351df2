"""Finished jobs' answers, one file per job id, written atomically.

`<state_dir>/jobs/<id>.json` holds the complete get_results body of a finished job
(`<id>.error.json` for a job that failed), written to a temporary file and renamed,
so a reader or a crash never sees half a result. File names are built from integers
only: no request value ever becomes part of a path.

Recent bodies are also kept in memory (an LRU bounded in bytes) because clients ask
for a result right after it is done; older ones are read from disk in a thread.
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

from server import logsetup

log = logsetup.get("results")
_NAME = re.compile(r"^([1-9][0-9]*)(\.error)?\.json$")


class ResultStore:
    DIR = "jobs"

    def __init__(self, state_dir: Path, fsync: bool = False, cache_bytes: int = 64 << 20):
        self.dir = Path(state_dir) / self.DIR
        self.fsync = fsync
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._lock = threading.Lock()

    def _path(self, job_id: int, ok: bool) -> Path:
        return self.dir / (f"{int(job_id)}.json" if ok else f"{int(job_id)}.error.json")

    def scan(self) -> dict[int, bool]:
        """Finished jobs on disk (id → ok), after removing temporaries a crash left."""
        self.dir.mkdir(parents=True, exist_ok=True)
        finished: dict[int, bool] = {}
        with os.scandir(self.dir) as entries:
            for entry in entries:
                match = _NAME.match(entry.name)
                if match:
                    finished[int(match.group(1))] = match.group(2) is None
                elif entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
        return finished

    def write(self, job_id: int, ok: bool, body: bytes) -> None:
        """Blocking; called from the pool's collector thread, never the event loop."""
        final = self._path(job_id, ok)
        temporary = self.dir / f".{int(job_id)}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(body)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, final)
        self._remember(job_id, body)

    def sync(self) -> None:
        """Make the renames done so far durable (fsync mode): fsync of a file covers
        its data, not the directory entry that names it."""
        if self.fsync:
            sync_directory(self.dir)

    def cached(self, job_id: int) -> bytes | None:
        with self._lock:
            body = self._cache.get(job_id)
            if body is not None:
                self._cache.move_to_end(job_id)
            return body

    def read(self, job_id: int, ok: bool) -> bytes:
        """Blocking read of a result that is no longer cached (run in an executor)."""
        body = self._path(job_id, ok).read_bytes()
        self._remember(job_id, body)
        return body

    def delete(self, items: list[tuple[int, bool]]) -> None:
        """Blocking removal of evicted results (run in an executor)."""
        with self._lock:
            for job_id, _ in items:
                body = self._cache.pop(job_id, None)
                if body is not None:
                    self._cache_bytes -= len(body)
        for job_id, ok in items:
            try:
                os.unlink(self._path(job_id, ok))
            except FileNotFoundError:
                pass

    def _remember(self, job_id: int, body: bytes) -> None:
        with self._lock:
            if job_id in self._cache:
                return
            self._cache[job_id] = body
            self._cache_bytes += len(body)
            while self._cache_bytes > self._cache_limit and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)


def sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
