"""The embedded executor: a pool of worker processes attached to the shared dataset.

local.py is the parent's side (LocalPool), worker.py the worker process's loop.
"""
from server.pool.local import MAX_ATTEMPTS, LocalPool

__all__ = ["MAX_ATTEMPTS", "LocalPool"]
