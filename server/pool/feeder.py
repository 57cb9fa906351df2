"""The manager process, its job queue, and the event loop's own connection to it.

Every call to a multiprocessing manager is a round trip to another process, and that
process can die (then the connection ends) or stop (then it never answers). A proxy
call blocks until the answer comes, so the event loop never makes one. Instead it
speaks the manager's protocol on a connection of its own, without waiting: a call
is one message sent with MSG_DONTWAIT (it can never block: if the manager has let
so much pile up that the socket is full, it is stuck, and is replaced), and the
answers, which come in order, are read when the socket is readable (add_reader),
each handed to what was waiting for it. The loop never waits for the manager, and no
thread sits between them — the hand-off of every batch through a thread used to cost
the parent a thread wake-up and GIL hand-offs (docs/performance.md).

The protocol is the one BaseProxy._callmethod speaks (a (queue id, method, args,
kwds) tuple; a ("#RETURN", result) or an error kind back), on a connection made the
way BaseProxy._connect makes one; the workers use ordinary proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing import managers
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.managers import SyncManager
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

from compute.messages import Batch
from server.pool import worker
from server.pool.ledger import QUEUE_DEPTH

# (feeder, batches waiting in the queue, batches handed before the count was asked)
OnCounted = Callable[["Feeder", int, int], None]
OnFailed = Callable[["Feeder", BaseException], None]
OnAnswer = Callable[[str, Any], None]  # (kind, result)

# Bytes of calls the manager may leave unanswered before it counts as stuck: the
# ledger's credit keeps a few batches outstanding at most (~150 bytes a job, 64 jobs
# a batch at most), and the socket's send buffer (_SEND_BUFFER, or the system's
# limit, 208 KB by default on Linux) holds this much.
_UNANSWERED_BYTES = 96 << 10
_SEND_BUFFER = 1 << 20


class Feeder:
    def __init__(
        self,
        manager: SyncManager,
        jobs: queue.Queue[Any],
        conn: Connection,
        on_counted: OnCounted,
        on_failed: OnFailed,
    ):
        self.jobs = jobs  # the proxy each worker process gets
        self._manager = manager
        self._process: BaseProcess = getattr(manager, "_process")  # noqa: B009 (private)
        self._conn = conn
        self._socket = socket.socket(fileno=os.dup(conn.fileno()))
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self._queue_id = getattr(jobs, "_id")  # noqa: B009 (the proxy's referent)
        self._on_counted = on_counted
        self._on_failed = on_failed
        self._waiting: deque[tuple[int, OnAnswer | None]] = deque()  # (bytes, callback)
        self._unanswered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @classmethod
    def start(
        cls,
        ctx: BaseContext,
        size: int,
        on_counted: OnCounted,
        on_failed: OnFailed,
    ) -> Feeder:
        """Start a manager process and its queue, and connect to it (blocking: not on
        the event loop once the server serves)."""
        manager = SyncManager(ctx=ctx)
        manager.start(initializer=worker.quiet_child)
        try:
            # Bounded: batches wait in the ledger (cheap) rather than in the manager;
            # the ledger's credit keeps a put from ever waiting for room.
            jobs = manager.Queue(maxsize=QUEUE_DEPTH * size)
            # As BaseProxy._connect does, with a name for the manager's thread.
            conn = getattr(jobs, "_Client")(  # noqa: B009
                getattr(jobs, "_token").address,  # noqa: B009
                authkey=getattr(jobs, "_authkey"),  # noqa: B009
            )
            dispatch = getattr(managers, "dispatch")  # noqa: B009 (not in typeshed)
            dispatch(conn, None, "accept_connection", ("pool-loop",))
        except BaseException:
            _kill(getattr(manager, "_process"))  # noqa: B009
            manager.shutdown()
            raise
        return cls(manager, jobs, conn, on_counted, on_failed)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def sentinel(self) -> int:
        return self._process.sentinel

    # -- the event loop ------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the manager's answers in this loop from now on."""
        self._loop = loop
        loop.add_reader(self._conn.fileno(), self._answered)
        # add_reader (libuv) makes the socket non-blocking, but Connection.recv()
        # expects it blocking: the rest of an answer is always on its way. Sends do not
        # wait either way (MSG_DONTWAIT).
        os.set_blocking(self._conn.fileno(), True)

    def put(self, batch: Batch) -> None:
        self._call("put", (batch,), {})

    def count(self, upto: int) -> None:
        """Count the batches waiting in the queue; on_counted answers in the loop."""
        self._call("qsize", (), {}, lambda kind, waiting: self._counted(kind, waiting, upto))

    def stop_workers(self, count: int) -> None:
        for _ in range(count):  # a full queue answers queue.Full after a second: ignored
            self._call("put", (None,), {"timeout": 1.0}, _ignore)

    def _call(
        self, method: str, args: tuple[Any, ...], kwds: dict[str, Any], then: OnAnswer | None = None
    ) -> None:
        if self._closed:
            return
        payload = ForkingPickler.dumps((self._queue_id, method, args, kwds))
        # multiprocessing.connection's framing: a signed 4-byte length, then the bytes.
        message = struct.pack("!i", len(payload)) + bytes(payload)
        if self._unanswered + len(message) > _UNANSWERED_BYTES:
            self._fail(
                RuntimeError(f"the manager left {self._unanswered} bytes of calls unanswered")
            )
            return
        try:
            sent = self._socket.send(message, socket.MSG_DONTWAIT)
        except OSError as exc:  # BlockingIOError: it is stuck; EPIPE…: it is gone
            self._fail(exc)
            return
        if sent != len(message):  # half a message: the connection cannot be used again
            self._fail(RuntimeError("the manager's socket is full"))
            return
        self._unanswered += len(message)
        self._waiting.append((len(message), then))

    def _answered(self) -> None:
        """Every answer already in the socket, each to whoever waits for it."""
        while not self._closed:
            try:
                if not self._conn.poll():
                    return
                kind, result = self._conn.recv()
            except (EOFError, OSError) as exc:  # it died: its sentinel says so too
                self._fail(exc)
                return
            if not self._waiting:
                self._fail(RuntimeError(f"the manager answered a call never made ({kind})"))
                return
            size, then = self._waiting.popleft()
            self._unanswered -= size
            if then is not None:
                then(kind, result)
            elif kind != "#RETURN":  # a put of a batch failed: the queue is not usable
                self._fail(RuntimeError(f"the manager failed a put ({kind}: {result!r})"))
                return

    def _counted(self, kind: str, waiting: Any, upto: int) -> None:
        if kind != "#RETURN":
            self._fail(RuntimeError(f"the manager failed a count ({kind}: {waiting!r})"))
            return
        self._on_counted(self, waiting, upto)

    def _fail(self, exc: BaseException) -> None:
        """The connection is unusable: close it, and tell the pool on the next loop
        turn (not from inside the call that failed: the pool then replaces the manager,
        and the jobs handed to this one meanwhile are sent again)."""
        if self._closed:
            return
        self.detach()
        if self._loop is not None:
            self._loop.call_soon(self._on_failed, self, exc)
        else:
            self._on_failed(self, exc)

    def detach(self) -> None:
        """Stop reading the manager's answers and close the connection (event loop)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                self._loop.remove_reader(self._conn.fileno())
        self._socket.close()
        self._conn.close()

    # -- the manager's end (kill: any thread; shutdown: blocking) -----------------------
    def kill(self) -> None:
        """The manager is dead or useless: end it now, and reap it in a thread. On the
        event loop once attached; before that, from any thread."""
        self.detach()
        _kill(self._process)
        threading.Thread(
            target=self._manager.shutdown, name="pool-manager-reap", daemon=True
        ).start()

    def shutdown(self, timeout: float) -> None:
        """Blocking, bounded: ask the manager to exit, SIGKILL it if it does not (a
        stopped manager never answers). Call detach() first, on the loop."""
        asking = threading.Thread(
            target=self._manager.shutdown, name="pool-manager-stop", daemon=True
        )
        asking.start()
        asking.join(timeout)
        if asking.is_alive():
            _kill(self._process)
            asking.join(timeout)


def _ignore(kind: str, result: Any) -> None:
    pass


def _kill(process: BaseProcess) -> None:
    # The manager ignores SIGTERM (worker.quiet_child); SIGKILL also ends a stopped one.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        process.kill()
