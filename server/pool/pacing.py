"""How often the pool tries again after a failure, and how often it says so."""

from __future__ import annotations

import logging
import math
import time


class Backoff:
    """Delays that double from `first` up to `most`, until reset() after a success."""

    def __init__(self, first: float = 0.1, most: float = 5.0):
        self._first = first
        self._most = most
        self._delay = first

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._most, delay * 2)
        return delay

    def reset(self) -> None:
        self._delay = self._first


class Throttle:
    """At most one log record per cause every `every` seconds; the next one says how
    many were left out, so a fault that repeats is never silent and never floods."""

    def __init__(self, log: logging.Logger, every: float = 60.0):
        self._log = log
        self._every = every
        self._seen: dict[str, tuple[float, int]] = {}  # cause → (last logged, left out)

    def error(self, cause: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        last, left_out = self._seen.get(cause, (-math.inf, 0))
        if now - last < self._every:
            self._seen[cause] = (last, left_out + 1)
            return
        if left_out:
            message += " (%d more like this in the last %g s not logged)"
            args += (left_out, self._every)
        self._log.error(message, *args, exc_info=exc_info)
        self._seen[cause] = (now, 0)
