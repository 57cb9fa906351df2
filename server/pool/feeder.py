"""The manager process, its job queue, and the one thread that talks to them.

Every call to a multiprocessing manager is a blocking round trip to another process,
and that process can die (then the call fails) or stop (then the call waits
forever). So no such call runs on the event loop: the loop hands commands to the
feeder's thread — put a batch, count the queue, tell the workers to stop — and the
thread reports back with loop.call_soon_threadsafe. A thread stuck in a call to a
stopped manager is a daemon and is freed by kill(), which SIGKILLs the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.managers import SyncManager
from multiprocessing.process import BaseProcess
from typing import Any

from compute.messages import Batch
from server.pool import worker
from server.pool.ledger import QUEUE_DEPTH

# (feeder, batches waiting in the queue, batches handed before the count was asked)
OnCounted = Callable[["Feeder", int, int], None]
OnFailed = Callable[["Feeder", BaseException], None]


@dataclass(frozen=True)
class _Count:
    upto: int


@dataclass(frozen=True)
class _StopWorkers:
    count: int


_CLOSE = object()


class Feeder:
    def __init__(
        self,
        manager: SyncManager,
        jobs: queue.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        on_counted: OnCounted,
        on_failed: OnFailed,
    ):
        self.jobs = jobs  # the proxy each worker process gets
        self._manager = manager
        self._process: BaseProcess = getattr(manager, "_process")  # noqa: B009 (private)
        self._loop = loop
        self._on_counted = on_counted
        self._on_failed = on_failed
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pool-feeder", daemon=True)

    @classmethod
    def start(
        cls,
        ctx: BaseContext,
        size: int,
        loop: asyncio.AbstractEventLoop,
        on_counted: OnCounted,
        on_failed: OnFailed,
    ) -> Feeder:
        """Start a manager process and its queue (blocking: not on the event loop once
        the server serves)."""
        manager = SyncManager(ctx=ctx)
        manager.start(initializer=worker.quiet_child)
        try:
            # Bounded: batches wait in the ledger (cheap) rather than in the manager;
            # the ledger's credit keeps a put from ever waiting for room.
            jobs = manager.Queue(maxsize=QUEUE_DEPTH * size)
        except BaseException:
            _kill(getattr(manager, "_process"))  # noqa: B009
            manager.shutdown()
            raise
        feeder = cls(manager, jobs, loop, on_counted, on_failed)
        feeder._thread.start()
        return feeder

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def sentinel(self) -> int:
        return self._process.sentinel

    # -- commands (event loop; never block) ----------------------------------------------
    def put(self, batch: Batch) -> None:
        self._commands.put(batch)

    def count(self, upto: int) -> None:
        """Count the batches waiting in the queue; on_counted answers in the loop."""
        self._commands.put(_Count(upto))

    def stop_workers(self, count: int) -> None:
        self._commands.put(_StopWorkers(count))

    def kill(self) -> None:
        """The manager is dead or useless: end it now, and reap it in a thread."""
        self._commands.put(_CLOSE)
        _kill(self._process)
        threading.Thread(
            target=self._manager.shutdown, name="pool-manager-reap", daemon=True
        ).start()

    def shutdown(self, timeout: float) -> None:
        """Blocking, bounded: ask the manager to exit, SIGKILL it if it does not (a
        stopped manager never answers)."""
        self._commands.put(_CLOSE)
        asking = threading.Thread(
            target=self._manager.shutdown, name="pool-manager-stop", daemon=True
        )
        asking.start()
        asking.join(timeout)
        if asking.is_alive():
            _kill(self._process)
            asking.join(timeout)

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            command = self._commands.get()
            if command is _CLOSE:
                return
            try:
                if isinstance(command, Batch):
                    self.jobs.put(command)
                elif isinstance(command, _Count):
                    waiting = self.jobs.qsize()
                    self._tell(self._on_counted, self, waiting, command.upto)
                elif isinstance(command, _StopWorkers):
                    for _ in range(command.count):
                        self.jobs.put(None, timeout=1.0)
            except queue.Full:
                continue  # stopping, and the workers do not take: they are killed
            except Exception as exc:  # noqa: BLE001 EOFError, ConnectionError, …: it is gone
                self._tell(self._on_failed, self, exc)
                return

    def _tell(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(callback, *args)


def _kill(process: BaseProcess) -> None:
    # The manager ignores SIGTERM (worker.quiet_child); SIGKILL also ends a stopped one.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        process.kill()
