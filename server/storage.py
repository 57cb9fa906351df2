"""Whether the state dir can take writes now (issue 8, item 10).

A job is acknowledged only once its journal line is written, and finished only once
its result file is; when either cannot be written (a full disk, a file system
remounted read-only, a directory made unwritable) the server says so instead of
answering wrongly: `fault` holds the reason, /readyz answers 503 with it, POSTs are
refused with 503 + Retry-After, and the jobs whose results could not be stored wait.

A fault is set by the write that failed, or by the once-a-second check when the file
system is read-only or has no free block or inode left. It is cleared only by the
same check finding that a probe file of PROBE_BYTES can be written and removed in the
state dir and in the results directory: a bit more than the largest answer, so that
the server does not flap between "ready" and a failed write when a few bytes come
free. The check's system calls run in a thread, never on the event loop (a hung file
system must not freeze HTTP).
"""

from __future__ import annotations

import contextlib
import os
import re

from server import logsetup
from server.results import write_all

log = logsetup.get("storage")

CHECK_SECONDS = 1.0
PROBE_BYTES = 128 * 1024  # the largest answer (mean_by_category) is ~60 KB


class StorageHealth:
    def __init__(self, state_dir: str | os.PathLike, results_dir: str | os.PathLike):
        self.dirs = {
            "the state dir": os.fspath(state_dir),
            "the results directory": os.fspath(results_dir),
        }
        self.fault: str | None = None
        self.faults = 0  # times storage went from writable to failing

    def failed(self, reason: str) -> None:
        """Event loop: a write failed for `reason` (one line for clients and the log)."""
        if self.fault is None:
            self.faults += 1
            log.error(
                "storage fault: %s; refusing new jobs until it can be written",
                reason,
                extra=logsetup.CONSOLE,
            )
        self.fault = reason

    def recovered(self) -> None:
        if self.fault is not None:
            log.warning(
                "storage can be written again (was: %s)", self.fault, extra=logsetup.CONSOLE
            )
        self.fault = None

    def check(self, faulted: bool) -> str | None:
        """Blocking (run in a thread): why the state dir cannot be written, or None.
        While healthy only the cheap statvfs signs are read; while faulted, a probe
        write decides."""
        for name, path in self.dirs.items():
            try:
                info = os.statvfs(path)
            except OSError as exc:
                return describe(f"{name} cannot be examined", exc)
            if info.f_flag & os.ST_RDONLY:
                return f"storage is not writable: {name} is on a read-only file system"
            # root may write into the blocks reserved for it; others may not
            free = info.f_bfree if os.geteuid() == 0 else info.f_bavail
            if free == 0:
                return f"storage is full: no space left for {name}"
            if info.f_files and info.f_ffree == 0:
                return f"storage is full: no inodes left for {name}"
        if faulted:
            for name, path in self.dirs.items():
                problem = _probe(name, path)
                if problem:
                    return problem
        return None

    def remove_stale_probes(self) -> None:
        """Start-up: probe files a killed server left (those in jobs/ go with the
        results' temporaries)."""
        state_dir = self.dirs["the state dir"]
        for entry in os.listdir(state_dir):
            if entry.startswith(".probe.") and entry.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(state_dir, entry))


def _probe(name: str, directory: str) -> str | None:
    path = os.path.join(directory, f".probe.{os.getpid()}.tmp")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(descriptor, b"\0" * PROBE_BYTES)
        finally:
            os.close(descriptor)
        return None
    except OSError as exc:
        return describe(f"{name} cannot be written", exc)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def describe(what: str, exc: OSError | str) -> str:
    """The reason clients read: says plainly when the storage is full, and names the
    system error but never a path (`exc` may be a worker's "[Errno 28] ...: 'path'")."""
    if isinstance(exc, OSError):
        text = exc.strerror or type(exc).__name__
    else:
        found = re.search(r"\[Errno \d+\] ([^:'\n]+)", exc)
        text = found.group(1).strip() if found else "an I/O error"
    if "No space left" in text or "Disk quota" in text:
        return f"storage is full: {what} ({text})"
    return f"storage is not writable: {what} ({text})"
