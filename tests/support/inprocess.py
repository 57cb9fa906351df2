"""The application in the test's own event loop, with a real pool of worker processes,
for tests driven through pytest-aiohttp's `aiohttp_client`. The pool is started as
`lestats serve` starts it (server.serve.start_embedded)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from compute.dataset import load_csv
from compute.shared import SharedDataset
from server.app import init_app
from server.config import Settings
from server.jobs import JobService
from server.pool import LocalPool
from server.serve import start_embedded


@dataclass
class Running:
    app: object
    service: JobService
    pool: LocalPool
    shared: SharedDataset


@contextlib.asynccontextmanager
async def running_app(csv, state_dir, workers: int = 1, **settings):
    settings = Settings(state_dir=str(state_dir), workers=workers, **settings)
    async with contextlib.AsyncExitStack() as stack:
        shared = SharedDataset.create(load_csv(csv))
        stack.callback(shared.release)
        service = JobService(state_dir, max_queue=settings.max_queue, retain=settings.max_results)
        start_embedded(service, shared, settings, stack, None)
        app = init_app(service, shared.dataset, settings, {"file": str(csv)})
        yield Running(app, service, service.executor, shared)
        service.begin_shutdown()
        await asyncio.wait_for(service.wait_drained(), 30)
