"""The aiohttp application factory (in the manner of aiohttp-demos' polls)."""

from __future__ import annotations

from aiohttp import web

from compute.dataset import Dataset
from server.config import Settings
from server.dashboard import add_dashboard_routes
from server.errors import BODY_DEADLINE, json_errors, read_body
from server.jobs import Service
from server.metrics import Metrics
from server.openapi import served
from server.routes import DATASET, INFO, METRICS, OPENAPI, ROUTES, SERVICE, SETTINGS

# Bodies are two short strings; anything much larger is a mistake or an attack.
MAX_BODY = 64 * 1024


def init_app(
    service: Service, dataset: Dataset, settings: Settings, info: dict | None = None
) -> web.Application:
    metrics = Metrics(service)
    # Outermost first: requests are counted with the status json_errors gave them.
    app = web.Application(
        middlewares=[metrics.middleware(), json_errors, read_body], client_max_size=MAX_BODY
    )
    app[METRICS] = metrics
    app[BODY_DEADLINE] = settings.client_timeout
    app[SERVICE] = service
    app[DATASET] = dataset
    app[OPENAPI] = served(dataset)
    app[SETTINGS] = settings
    app[INFO] = info or {}
    app.add_routes(ROUTES)
    add_dashboard_routes(app)
    return app
