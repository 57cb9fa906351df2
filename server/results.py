"""Finished jobs' answers, one file per job id, written atomically.

`<state_dir>/jobs/<id>.json` holds the complete get_results body of a finished job
(`<id>.error.json` for a job that failed), written to a file without a name that is
then linked under its name (or, where that is not possible, to a temporary file that
is then renamed), so a reader or a crash never sees half a result. File names are
built from integers only: no request value ever becomes part of a path.

ResultFiles is the disk side. It is small and picklable because the worker processes
write the files themselves, before they report a job done: moving those writes out
of the parent halved its CPU per job (docs/performance.md). ResultStore is the
parent's side: the files plus the bodies of recent jobs in memory, because clients
ask for a result right after it is done.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

# Ids have at most 18 digits (server/validation.py); longer names are not ours.
_NAME = re.compile(r"^([1-9][0-9]{0,17})(\.error)?\.json$")


@dataclass(frozen=True)
class ResultFiles:
    dir: str
    fsync: bool = False

    def path(self, job_id: int, ok: bool) -> str:
        return os.path.join(self.dir, _name(job_id, ok))

    def write(self, job_id: int, ok: bool, body: bytes) -> None:
        if self.dir not in _NO_TMPFILE and self._write_unnamed(job_id, ok, body):
            return
        # The pid keeps two processes that run the same job (a re-run after a worker
        # death) from sharing a temporary file.
        temporary = os.path.join(self.dir, f".{int(job_id)}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(body)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, self.path(job_id, ok))
        except OSError:
            # A full disk must not fill up with half-written temporaries either.
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def _write_unnamed(self, job_id: int, ok: bool, body: bytes) -> bool:
        """Write the body into a file without a name (O_TMPFILE), then give it its
        name (linkat): as atomic as a temporary file and a rename, at about half the
        CPU (36 against 60-70 µs per result on ext4, docs/performance.md), and a crash
        leaves no temporary behind. False when this cannot be done here: the file
        already exists (a job run again; the rename replaces it) or the file system
        or /proc does not allow it."""
        directory = _directory(self.dir)
        try:
            descriptor = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=directory)
        except OSError as exc:
            # Open the directory again next time: it may have been removed and made
            # again (the descriptor is then of the removed one). The rename below
            # meets, and reports, any real fault of the disk.
            os.close(_DIRECTORIES.pop(self.dir))
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                _NO_TMPFILE.add(self.dir)  # this file system has no O_TMPFILE
            return False
        try:
            write_all(descriptor, body)
            if self.fsync:
                os.fsync(descriptor)
            os.link(f"/proc/self/fd/{descriptor}", _name(job_id, ok), dst_dir_fd=directory)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EACCES):
                raise  # the disk's fault (full, read-only, failing): the caller reports it
            _NO_TMPFILE.add(self.dir)  # no /proc, or linkat refused: use renames
            return False
        finally:
            os.close(descriptor)

    def link(self, source_id: int, job_id: int) -> bool:
        """Give job `job_id` the answer already stored for `source_id` (the same question
        on the same data, so the same bytes): a hard link to that file. No new inode
        and no data are written — on ext4 allocating an inode is most of a result's
        cost, up to hundreds of µs when many files were deleted recently
        (docs/performance.md). The name appears whole or not at all, like a written
        result. False when this cannot be done, and the caller writes the body: the
        source was evicted, it has as many links as the file system allows, the job's
        file already exists (a re-run, which write() replaces), or links are refused
        here."""
        directory = _directory(self.dir)
        try:
            os.link(
                _name(source_id, True),
                _name(job_id, True),
                src_dir_fd=directory,
                dst_dir_fd=directory,
            )
            return True
        except (FileNotFoundError, FileExistsError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EMLINK, errno.EPERM, errno.EXDEV, errno.EACCES):
                return False
            raise  # the disk's fault (full, read-only, failing): the caller reports it

    def commit(self) -> None:
        """Make the names given so far durable (fsync mode): fsync of a file covers
        its data, not the directory entry that names it (nor a link's). Workers call it once per
        batch, before reporting the batch done."""
        if self.fsync:
            sync_directory(self.dir)

    def read(self, job_id: int, ok: bool) -> bytes:
        with open(self.path(job_id, ok), "rb") as handle:
            return handle.read()

    def scan(self) -> dict[int, bool]:
        """Finished jobs on disk (id → ok), after removing temporaries a crash left."""
        return self.survey()[0]

    def survey(self) -> tuple[dict[int, bool], set[int]]:
        """scan(), and the ids whose result file is empty (what a power loss can leave of a file
        whose data had not reached the disk): those are not finished, and their empty
        files are removed so that they can be written again."""
        os.makedirs(self.dir, exist_ok=True)
        finished: dict[int, bool] = {}
        empty: set[int] = set()
        with os.scandir(self.dir) as entries:
            for entry in entries:
                match = _NAME.match(entry.name)
                if match and entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_size == 0:
                        os.unlink(entry.path)
                        empty.add(int(match.group(1)))
                    else:
                        finished[int(match.group(1))] = match.group(2) is None
                elif entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
        return {i: ok for i, ok in finished.items() if i not in empty}, empty

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

    def __init__(
        self,
        state_dir: Path,
        fsync: bool = False,
        recent: int = 100_000,
        answer_bytes: int = 64 << 20,
    ):
        self.files = ResultFiles(str(Path(state_dir) / self.DIR), fsync)
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._recent_limit = recent
        self._answers: OrderedDict[tuple, bytes] = OrderedDict()
        self._answer_bytes = 0
        self._answer_limit = answer_bytes
        self._lock = threading.Lock()  # reads of evicted results run in executor threads

    def scan(self) -> tuple[dict[int, bool], set[int]]:
        """(finished id → ok, ids whose result file was empty): ResultFiles.survey."""
        return self.files.survey()

    def remember(self, job_id: int, key: tuple, body: bytes | None, ok: bool = True) -> None:
        """Record a finished job's body (None: the body last sent for `key`). Only
        answers are shared by question: an error belongs to its job alone (issue 8,
        item 3: one stored error must not become every later job's answer)."""
        if not ok:
            key = None
        with self._lock:
            if body is None:
                body = self._answers.get(key) if key is not None else None
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

    def read(self, job_id: int, ok: bool) -> bytes | None:
        """Blocking read of a result no longer in memory (run in an executor); None
        when the file is not a get_results body (damaged on disk: garbage, cut short),
        which must never be served as one."""
        body = self.files.read(job_id, ok)
        return body if is_result_body(body) else None

    def delete(self, items: list[tuple[int, bool]]) -> None:
        """Blocking removal of evicted results (run in an executor)."""
        with self._lock:
            for job_id, _ in items:
                self._recent.pop(job_id, None)
        self.files.delete(items)


DAMAGED = json.dumps(
    {"status": "error", "reason": "the stored result of this job is damaged; please ask again"}
).encode()


def is_result_body(body: bytes) -> bool:
    """The shape every get_results body is written in (server.pool.worker: a done body, or
    an error body), ending where a JSON object ends, with no NUL byte (what a power loss
    leaves of data that had not reached the disk). Checked on every read from disk, so
    it is O(1) plus one memchr rather than a JSON parse (~1 ms for the largest answers,
    holding the GIL the event loop needs)."""
    return (
        body.startswith((b'{"status": "done", "data": ', b'{"status": "error", "reason": '))
        and body.endswith(b"}")
        and b"\0" not in body
    )


# Per process: an open descriptor of each result directory, and the directories
# where unnamed files cannot be linked (they fall back to a rename).
_DIRECTORIES: dict[str, int] = {}
_NO_TMPFILE: set[str] = set()


def _name(job_id: int, ok: bool) -> str:
    return f"{int(job_id)}.json" if ok else f"{int(job_id)}.error.json"


def _directory(path: str) -> int:
    descriptor = _DIRECTORIES.get(path)
    if descriptor is None:
        descriptor = _DIRECTORIES[path] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    return descriptor


def write_all(descriptor: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def sync_directory(path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
