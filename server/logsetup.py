"""Logging (SPEC §6) that never blocks the event loop.

Every logger writes into a QueueHandler; one QueueListener thread formats the records
and writes them to a rotating file (everything) and to stderr (start-up, shutdown,
warnings and errors: records at WARNING and above, or marked `extra=CONSOLE`).
"""
from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time

CONSOLE = {"console": True}
LOGGER = "lestats"


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class _ConsoleFilter(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.WARNING or getattr(record, "console", False)


def configure(log_file: str) -> logging.handlers.QueueListener:
    """Route all logging through a background thread; the caller stops the listener."""
    formatter = _UTCFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=1024 * 1024, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(formatter)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    console.addFilter(_ConsoleFilter())
    records: queue.SimpleQueue = queue.SimpleQueue()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(logging.INFO)
    listener = logging.handlers.QueueListener(records, file_handler, console,
                                              respect_handler_level=True)
    listener.start()
    return listener


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}")
