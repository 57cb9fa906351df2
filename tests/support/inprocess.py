"""The application in the test's own event loop, with a real pool of worker processes,
for tests driven through pytest-aiohttp's `aiohttp_client`."""

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


@dataclass
class Running:
    app: object
    service: JobService
    pool: LocalPool
    shared: SharedDataset


@contextlib.asynccontextmanager
async def running_app(csv, state_dir, workers: int = 1, **settings):
    settings = Settings(state_dir=str(state_dir), workers=workers, **settings)
    shared = SharedDataset.create(load_csv(csv))
    try:
        service = JobService(state_dir, max_queue=settings.max_queue, retain=settings.max_results)
        unfinished = service.open()
        pool = LocalPool(
            shared.handle,
            workers,
            service.results.files,
            service.on_done,
            job_timeout=settings.job_timeout,
        )
        pool.start()
        try:
            service.start(pool, unfinished)
            app = init_app(service, shared.dataset, settings, {"file": str(csv)})
            yield Running(app, service, pool, shared)
            service.begin_shutdown()
            await asyncio.wait_for(service.wait_drained(), 30)
        finally:
            await pool.stop()
            service.close()
    finally:
        shared.release()
