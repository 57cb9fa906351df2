"""Logging (docs/operations.md, "Logs and metrics") that never blocks the event loop
and costs it little.

Every logger hands its records, unformatted, to a queue. One background thread takes
them in bulk, formats them and writes each batch with a single write to a rotating
file (5 × 1 MiB), and to stderr for start-up, shutdown, warnings and errors (records at
WARNING and above, or marked `extra=CONSOLE`). Under load the server logs a few records
per job; doing that with the standard QueueListener + RotatingFileHandler (which
formats in the caller's thread, then seeks and writes once per record) took a fifth
of the parent's CPU in profiles.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import threading
import time

from aiohttp.abc import AbstractAccessLogger

CONSOLE = {"console": True}
LOGGER = "lestats"
MAX_BYTES = 1024 * 1024
BACKUPS = 5
_BATCH = 1000
_PAUSE = 0.02  # between batches: under load, one wake-up per 20 ms, not one per record


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


FORMATTER = _UTCFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


class _EnqueueHandler(logging.handlers.QueueHandler):
    """Enqueue the record as it is: formatting happens in the writer thread. (The
    standard prepare() formats here, in the event loop, to make records picklable for
    other processes; ours never leave this process.)"""

    def prepare(self, record):
        return record


class LogWriter(threading.Thread):
    """The one thread that formats and writes every record."""

    def __init__(self, path: str):
        super().__init__(name="log-writer", daemon=True)
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self.path = path
        self._file = open(path, "ab")
        self._size = self._file.tell()

    def run(self) -> None:
        while True:
            batch = [self.records.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            self._write([r for r in batch if r is not None])
            if stop:
                return
            time.sleep(_PAUSE)

    def _write(self, records: list[logging.LogRecord]) -> None:
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
            if self._size + len(data) > MAX_BYTES and self._size > 0:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)
        except OSError as exc:
            console.append(f"cannot write the log file {self.path}: {exc}")
        if console:
            sys.stderr.write("\n".join(console) + "\n")
            sys.stderr.flush()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(BACKUPS - 1, 0, -1):
            source = f"{self.path}.{index}"
            if os.path.exists(source):
                os.replace(source, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "ab")
        self._size = 0

    def stop(self) -> None:
        self.records.put(None)
        self.join(10)
        self._file.close()


def configure(log_file: str) -> LogWriter:
    """Route all logging through the writer thread; the caller stops it at exit."""
    writer = LogWriter(log_file)
    # Our format uses none of these, and looking them up costs every record a syscall.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(_EnqueueHandler(writer.records))
    root.setLevel(logging.INFO)
    writer.start()
    return writer


class AccessLogger(AbstractAccessLogger):
    """One cheap record per request (aiohttp's default parses its format per request)."""

    def log(self, request, response, time: float) -> None:
        self.logger.info('%s "%s %s" %d %d %.6fs', request.remote, request.method,
                         request.path_qs, response.status, response.body_length, time)


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}")
