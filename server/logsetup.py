"""Logging (docs/operations.md, "Logs and metrics") that never blocks the event loop,
costs it little, and can never sink the process.

Every logger hands its records, unformatted, to a queue. One background thread takes
them in bulk, formats them and writes each batch with a single write to a rotating
file (5 × 1 MiB); start-up, shutdown, warnings and errors (records at WARNING and
above, or marked `extra=CONSOLE`) also go to stderr. Under load the server logs a few
records per job; doing that with the standard QueueListener + RotatingFileHandler
(which formats in the caller's thread, then seeks and writes once per record) took a
fifth of the parent's CPU in profiles.

What the log's own faults cost (docs/guarantees.md, "Faults of the log itself",
tests/faults/test_logging_faults.py):
- Memory is bounded: at most QUEUE_LIMIT records wait for the writer and
  CONSOLE_LIMIT batches for stderr; beyond, records are dropped and counted
  (`dropped()`, in /metrics as lestats_log_records_dropped_total{sink}), and the
  file says how many, once per REPEAT_WINDOW.
- The file does not depend on stderr: a second thread writes stderr, so a stderr
  whose reader went away (broken pipe) or stopped reading costs only console lines.
- A fault that repeats (the log file on a full disk, the same exception on every
  request) is written once per REPEAT_WINDOW, then summed up in one line, instead of
  a line and a traceback per occurrence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import sys
import threading
import time

from aiohttp.abc import AbstractAccessLogger

from server.results import write_all

CONSOLE = {"console": True}
LOGGER = "lestats"
MAX_BYTES = 1024 * 1024
BACKUPS = 5
# ~1 KB per waiting record: the queue holds at most ~10 MB, a few seconds of the
# heaviest load; records beyond are dropped (and counted), never held.
QUEUE_LIMIT = 10_000
CONSOLE_LIMIT = 20  # batches (≤ _BATCH lines each) waiting for stderr
REPEAT_WINDOW = 10.0  # seconds: a repeated fault is written once per window
_BATCH = 1000
_PAUSE = 0.02  # between batches: under load, one wake-up per 20 ms, not one per record


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


FORMATTER = _UTCFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


class _EnqueueHandler(logging.Handler):
    """Enqueue the record as it is: formatting happens in the writer thread. (The
    standard QueueHandler formats here, in the event loop, to make records picklable
    for other processes; ours never leave this process.) logging calls emit() under
    the handler's lock, so the bound is checked and the record queued atomically."""

    def __init__(self, writer: LogWriter):
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        if self.writer.records.qsize() >= self.writer.limit:
            self.writer.dropped["queue"] += 1
            return
        self.writer.records.put(record)


class _Repeats:
    """Collapses a fault that repeats: per kind (logger, message template, exception
    type and errno), the first record of each REPEAT_WINDOW is written, the others
    are counted and summed up in one line when the window ends. Applies to records
    with a traceback (a fault that repeats per request or per job) and to the writer's
    own faults; plain records, errors included, are events (a worker died, a job
    failed) and stay one line each — the bounded queue still caps their cost."""

    def __init__(self, window: float):
        self.window = window
        # kind → [window start, repeats suppressed, level, first line of the first]
        self._seen: dict[tuple, list] = {}

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple | None:
        if not record.exc_info:
            return None
        exc = record.exc_info[1] if record.exc_info else None
        return (record.name, str(record.msg)[:200], type(exc).__name__, getattr(exc, "errno", None))

    def admit(self, record: logging.LogRecord, now: float, kind: tuple | None = None) -> bool:
        kind = kind or self.kind(record)
        if kind is None:
            return True
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.window:
            seen[1] += 1
            return False
        if len(self._seen) >= 1000:  # never unbounded, whatever is logged
            self._seen.clear()
        self._seen[kind] = [now, 0, record.levelno, _first_line(record)]
        return True

    def summaries(self, now: float, final: bool = False) -> list[logging.LogRecord]:
        """One record per kind whose window has ended (all, when `final`) with
        repeats suppressed."""
        ended = [k for k, seen in self._seen.items() if final or now - seen[0] >= self.window]
        out = []
        for kind in ended:
            start, count, level, message = self._seen.pop(kind)
            if count:
                out.append(
                    _record(
                        kind[0],
                        level,
                        "%d more like this in the last %g s, not logged one by one: %s",
                        count,
                        round(min(now - start, self.window), 1),
                        message,
                    )
                )
        return out


def _first_line(record: logging.LogRecord) -> str:
    try:
        return record.getMessage().splitlines()[0][:300] if record.msg else ""
    except Exception:
        return str(record.msg)[:300]


def _record(name: str, level: int, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 0, msg, args, None)


class _Console(threading.Thread):
    """Writes the lines meant for stderr, apart from the file: a stderr that blocks
    (its reader stopped reading) stalls only this thread, one whose reader went away
    (broken pipe) is given up, and either way lines are dropped and counted."""

    def __init__(self, dropped: dict, on_broken):
        super().__init__(name="log-console", daemon=True)
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.dropped = dropped
        # The descriptor, not sys.stderr: a write blocked for ever on a stderr nobody
        # reads must not hold sys.stderr's lock, which the interpreter takes at exit.
        try:
            self._fd = sys.stderr.fileno()
            self.broken = False
        except (AttributeError, OSError, ValueError):  # no stderr at all
            self._fd, self.broken = -1, True
        self._on_broken = on_broken

    def put(self, lines: list[str]) -> None:
        if self.broken or self.lines.qsize() >= CONSOLE_LIMIT:
            self.dropped["console"] += len(lines)
            return
        self.lines.put(lines)

    def run(self) -> None:
        while True:
            lines = self.lines.get()
            if lines is None:
                return
            if self.broken:
                self.dropped["console"] += len(lines)
                continue
            try:
                write_all(self._fd, ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))
            except OSError as exc:
                self.broken = True
                self.dropped["console"] += len(lines)
                self._on_broken(exc)

    def stop(self) -> None:
        self.lines.put(None)
        self.join(2)  # it may be blocked on a stderr nobody reads: it is a daemon


class LogWriter(threading.Thread):
    """The one thread that formats every record and writes the file."""

    def __init__(self, path: str, limit: int = QUEUE_LIMIT, window: float = REPEAT_WINDOW):
        super().__init__(name="log-writer", daemon=True)
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self.limit = limit
        self.dropped = {"queue": 0, "console": 0}
        self.path = path
        self._open()
        # Only a regular file is rotated (renamed): never /dev/stdout, a FIFO, a device.
        self._rotates = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        self._repeats = _Repeats(window)
        self._reported = {"queue": 0, "console": 0}
        self._report_at = 0.0
        self.console = _Console(self.dropped, self._stderr_broken)

    def start(self) -> None:
        self.console.start()
        super().start()

    def run(self) -> None:
        while True:
            try:  # wake up now and then to sum up repeats and drops of a quiet time
                batch = [self.records.get(timeout=1.0)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < _BATCH:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            try:
                self._write([r for r in batch if r is not None], final=stop)
            except Exception as exc:  # the writer outlives anything; say it once
                self._fault("the log writer failed (%s: %s)", type(exc).__name__, exc)
            if stop:
                return
            if batch:
                time.sleep(_PAUSE)

    def _write(self, records: list[logging.LogRecord], final: bool = False) -> None:
        now = time.monotonic()
        records = [
            *self._repeats.summaries(now),  # of windows that ended before these
            *(r for r in records if self._repeats.admit(r, now)),
        ]
        if final:
            records += self._repeats.summaries(now, final=True)
        records += self._drops(now, final)
        if not records:
            return
        lines, console = [], []
        for record in records:
            try:
                line = FORMATTER.format(record)
            except Exception:  # a bad format string must not kill the writer
                line = f"unformattable log record {record.msg!r} {record.args!r}"
            lines.append(line)
            if record.levelno >= logging.WARNING or getattr(record, "console", False):
                console.append(line)
        data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        try:
            if self._file.closed:  # a rotation that could not reopen it: try again
                self._open()
            if self._rotates and self._size + len(data) > MAX_BYTES and self._size > 0:
                self._rotate()
            write_all(self._file.fileno(), data)
            self._size += len(data)
        except OSError as exc:
            self._fault(
                "cannot write the log file %s (%s)",
                self.path,
                exc.strerror or exc,
                errno=exc.errno,
                console=console,
            )
        if console:
            self.console.put(console)

    def _fault(
        self, msg: str, *args, errno: int | None = None, console: list[str] | None = None
    ) -> None:
        """A fault of the log itself, told on stderr once per REPEAT_WINDOW."""
        record = _record(LOGGER + ".log", logging.ERROR, msg, *args)
        kind = (LOGGER + ".log", msg, "OSError", errno)
        if self._repeats.admit(record, time.monotonic(), kind=kind):
            line = FORMATTER.format(record)
            if console is None:
                self.console.put([line])
            else:
                console.append(line)

    def _drops(self, now: float, final: bool = False) -> list[logging.LogRecord]:
        """A warning, once per window (and at the end), when records were dropped."""
        if (now < self._report_at and not final) or self.dropped == self._reported:
            return []
        counts = {k: self.dropped[k] - self._reported[k] for k in self.dropped}
        self._reported = dict(self.dropped)
        self._report_at = now + self._repeats.window
        return [
            _record(
                LOGGER + ".log",
                logging.WARNING,
                "dropped %d log records because "
                "the writer could not keep up, and %d stderr lines (stderr "
                "blocked or gone); the file has everything else",
                counts["queue"],
                counts["console"],
            )
        ]

    def _stderr_broken(self, exc: BaseException) -> None:
        self.records.put(
            _record(
                LOGGER + ".log",
                logging.WARNING,
                "stderr cannot be written (%s); warnings and errors go to %s only",
                type(exc).__name__,
                self.path,
            )
        )

    def _open(self) -> None:
        # Unbuffered (one write per batch anyway): a failed write leaves nothing behind
        # to be written again, or to fail again, at the next flush or at close.
        self._file = open(self.path, "ab", buffering=0)
        self._size = self._file.tell()

    def _rotate(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        for index in range(BACKUPS - 1, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._open()

    def stop(self) -> None:
        self.records.put(None)
        self.join(10)
        self.console.stop()
        with contextlib.suppress(OSError):
            self._file.close()


_active: LogWriter | None = None


def dropped() -> dict[str, int]:
    """Records dropped so far, by where: `queue` (the writer could not keep up) and
    `console` (stderr blocked or gone)."""
    return dict(_active.dropped) if _active else {"queue": 0, "console": 0}


def configure(log_file: str) -> LogWriter:
    """Route all logging through the writer thread; the caller stops it at exit."""
    global _active
    writer = LogWriter(log_file)
    # Our format uses none of these, and looking them up costs every record a syscall.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(_EnqueueHandler(writer))
    root.setLevel(logging.INFO)
    writer.start()
    _active = writer
    return writer


class AccessLogger(AbstractAccessLogger):
    """One cheap record per request (aiohttp's default parses its format per request)."""

    def log(self, request, response, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.6fs',
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time,
        )


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}")
