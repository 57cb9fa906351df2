"""A job that kills the worker process running it — like a job that segfaults or is
killed by the OOM killer. Its question is a str subclass whose hash (taken by the
worker's answer cache) SIGKILLs the process when that process is a worker; the
parent and the manager never hash it."""

from __future__ import annotations

import multiprocessing
import os
import signal


class Poison(str):
    def __hash__(self):
        if multiprocessing.current_process().name.startswith("lestats-worker"):
            os.kill(os.getpid(), signal.SIGKILL)
        return str.__hash__(self)
