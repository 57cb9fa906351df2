"""/openapi.json describes every route, and every described route exists; answers of
the real app match the documented schemas."""

from __future__ import annotations

import re

from server.openapi import document, served
from server.routes import ROUTES
from tests.support.inprocess import running_app


def _routed() -> set[tuple[str, str]]:
    """Every route the real application registers (the API table and the dashboard)."""
    from aiohttp import web

    from server.dashboard import add_dashboard_routes

    app = web.Application()
    app.add_routes(ROUTES)
    add_dashboard_routes(app)
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
    }


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in document()["paths"].items() for method in item}


def test_every_route_is_documented_and_every_document_entry_routed():
    assert _routed() == _documented()


def test_operations_name_their_answers():
    for path, item in document()["paths"].items():
        for operation in item.values():
            assert operation["operationId"] and "200" in operation["responses"], path
            for parameter in re.findall(r"{(\w+)}", path):
                names = [p["name"] for p in operation.get("parameters", [])]
                assert parameter in names, path


async def test_served_document_is_the_same(tmp_path, demo_csv, aiohttp_client):
    async with running_app(demo_csv, tmp_path / "s") as running:
        client = await aiohttp_client(running.app)
        response = await client.get("/openapi.json")
        assert response.status == 200
        assert await response.json() == served(running.shared.dataset)
        routed = {
            (r.method.lower(), r.resource.canonical)
            for r in running.app.router.routes()
            if r.method != "HEAD"
        }
        assert routed == _documented()
