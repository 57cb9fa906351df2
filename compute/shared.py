"""The dataset's arrays in one multiprocessing.shared_memory segment.

The parent loads the CSV once and copies the arrays into a single segment; each
worker attaches by name and builds numpy views on it, so the data exists once in
memory however many workers run. Only a small, picklable SharedHandle (segment name,
array layout, vocabularies) crosses the process boundary.

Segment names carry the owner's pid (lestats-<pid>-<random>) so that a segment left
by a process that was killed can be recognised and reclaimed at the next start.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from compute.dataset import Dataset

PREFIX = "lestats"
SHM_DIR = "/dev/shm"
_ALIGN = 64
_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class SharedHandle:
    segment: str
    layout: tuple[tuple[str, str, int, int], ...]  # (name, dtype, length, byte offset)
    vocabularies: dict[str, list[str]]
    file: str
    rows_read: int
    rows_ignored: int
    year_end_column: bool = True


class SharedDataset:
    """A Dataset whose arrays live in shared memory; the creator owns the segment."""

    def __init__(self, memory: shared_memory.SharedMemory, handle: SharedHandle, owner: bool):
        self._memory = memory
        self.handle = handle
        self.owner = owner
        arrays = {
            name: np.ndarray((length,), dtype=np.dtype(dtype), buffer=memory.buf, offset=offset)
            for name, dtype, length, offset in handle.layout
        }
        self.dataset: Dataset | None = Dataset(
            arrays=arrays,
            file=handle.file,
            rows_read=handle.rows_read,
            rows_ignored=handle.rows_ignored,
            year_end_column=handle.year_end_column,
            **handle.vocabularies,
        )

    @classmethod
    def create(cls, dataset: Dataset) -> SharedDataset:
        layout, offset = [], 0
        for name, array in dataset.arrays.items():
            layout.append((name, array.dtype.str, array.shape[0], offset))
            offset += -(-array.nbytes // _ALIGN) * _ALIGN
        name = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(4)}"
        memory = shared_memory.SharedMemory(name=name, create=True, size=max(offset, 1))
        try:
            for key, dtype, length, start in layout:
                target = np.ndarray(
                    (length,), dtype=np.dtype(dtype), buffer=memory.buf, offset=start
                )
                target[:] = dataset.arrays[key]
                del target
            handle = SharedHandle(
                memory.name,
                tuple(layout),
                dataset.vocabularies(),
                dataset.file,
                dataset.rows_read,
                dataset.rows_ignored,
                dataset.year_end_column,
            )
            return cls(memory, handle, owner=True)
        except BaseException:
            memory.close()
            memory.unlink()
            raise

    @classmethod
    def attach(cls, handle: SharedHandle) -> SharedDataset:
        return cls(shared_memory.SharedMemory(name=handle.segment), handle, owner=False)

    @property
    def nbytes(self) -> int:
        return self._memory.size

    def release(self) -> None:
        """Drop the views, unmap, and (for the owner) remove the segment's name."""
        if self.dataset is None:
            return
        self.dataset = None  # views must go before the mapping can close
        try:
            self._memory.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes with the process
        if self.owner:
            try:
                self._memory.unlink()
            except FileNotFoundError:
                pass


def reclaim_stale_segments() -> list[str]:
    """Unlink segments whose owning process no longer exists (left by a kill -9)."""
    reclaimed: list[str] = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return reclaimed
    for name in names:
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                reclaimed.append(name)
            except OSError:
                pass
    return reclaimed


def segments_of(pid: int) -> list[str]:
    """Names of the segments a process created (used by tests and shutdown checks)."""
    try:
        return [n for n in os.listdir(SHM_DIR) if n.startswith(f"{PREFIX}-{pid}-")]
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
