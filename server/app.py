"""The aiohttp application factory (in the manner of aiohttp-demos' polls)."""
from __future__ import annotations

from aiohttp import web

from compute.dataset import Dataset
from server.config import Settings
from server.errors import BODY_DEADLINE, json_errors, read_body
from server.jobs import JobService
from server.routes import DATASET, INFO, ROUTES, SERVICE, SETTINGS

# Bodies are two short strings; anything much larger is a mistake or an attack.
MAX_BODY = 64 * 1024


def init_app(service: JobService, dataset: Dataset, settings: Settings,
             info: dict | None = None) -> web.Application:
    app = web.Application(middlewares=[json_errors, read_body], client_max_size=MAX_BODY)
    app[BODY_DEADLINE] = settings.client_timeout
    app[SERVICE] = service
    app[DATASET] = dataset
    app[SETTINGS] = settings
    app[INFO] = info or {}
    app.add_routes(ROUTES)
    return app
