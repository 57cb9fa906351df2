"""The embedded executor: a pool of worker processes attached to the shared dataset.

local.py is the parent's side (LocalPool: processes, pipes, the event loop's part),
ledger.py its bookkeeping and rules, feeder.py the manager and the one thread that
talks to it, worker.py the worker process's loop, pacing.py backoff and throttled logs.
"""

from server.pool.ledger import MAX_ATTEMPTS
from server.pool.local import LocalPool

__all__ = ["MAX_ATTEMPTS", "LocalPool"]
