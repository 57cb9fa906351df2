"""One server per state dir: an exclusive flock on the directory itself, taken first.

Two servers on one state dir would corrupt it (issue 8, item 1: the second one
compacted the journal the first was still appending to, and ids were later handed out
twice). So before anything in the state dir is read or written, the server takes a
non-blocking flock on the directory; a second server fails to take it and stops with
one line naming the holder's pid, having touched nothing. The lock is the kernel's:
it goes with the process however that ends (kill -9 included), so there is no stale
lock file to clean up and nothing new in the state dir. The descriptor is not
inherited by the worker or manager processes (Python opens it non-inheritable and they
are spawned, not forked). Once locked, the directory's shape is checked, so that
a state dir that cannot work stops start-up with one line before the data is loaded.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StateDirError(Exception):
    """The state dir cannot be used; the message is one line for the operator."""


class StateLock:
    def __init__(self, state_dir: Path, descriptor: int):
        self.state_dir = state_dir
        self._fd: int | None = descriptor

    @classmethod
    def take(cls, state_dir: str | os.PathLike) -> StateLock:
        path = Path(state_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileExistsError:
            raise StateDirError(f"state dir {path} exists and is not a directory") from None
        except OSError as exc:
            raise StateDirError(
                f"state dir {path} cannot be used ({exc.strerror or exc})"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise StateDirError(
                f"state dir {path} is in use by another lestats server "
                f"({'pid ' + str(holder) if holder else 'pid unknown'}); stop it or give "
                "this one its own --state-dir"
            ) from None
        except OSError as exc:
            os.close(descriptor)
            raise StateDirError(
                f"state dir {path} cannot be locked ({exc.strerror or exc})"
            ) from None
        try:
            _check_shape(path)
        except StateDirError:
            os.close(descriptor)
            raise
        return cls(path, descriptor)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _check_shape(path: Path) -> None:
    """What can be told before the data is loaded (seconds, for a large file): the
    state dir can be written and holds what it should where it should."""
    if not os.access(path, os.W_OK | os.X_OK):
        read_only = os.statvfs(path).f_flag & os.ST_RDONLY
        raise StateDirError(
            f"state dir {path} is not writable{' (Read-only file system)' if read_only else ''}"
        )
    for name, is_right, wanted in (
        ("journal.jsonl", os.path.isfile, "a file"),
        ("jobs", os.path.isdir, "a directory"),
    ):
        if os.path.lexists(path / name) and not is_right(path / name):
            raise StateDirError(
                f"{path / name} is not {wanted}; the state dir is "
                "damaged or not a lestats state dir"
            )


def _holder(descriptor: int) -> int | None:
    """The pid holding a flock on this directory, from /proc/locks (Linux)."""
    info = os.fstat(descriptor)
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as handle:
            for line in handle:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 5646 fe:00:4243520 0 EOF"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None
