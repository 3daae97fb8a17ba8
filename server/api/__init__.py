"""The JSON API under ``/api/v1``, with its OpenAPI document at ``/api/v1/openapi.json``."""

from __future__ import annotations

from aiohttp import web

from server.api import admin, agreements, cases, evidence, notes
from server.api.registry import PREFIX, ApiRegistry, json_response


def build_registry() -> ApiRegistry:
    api = ApiRegistry()
    admin.register(api)
    cases.register(api)
    evidence.register(api)
    agreements.register(api)
    notes.register(api)
    return api


def setup(app: web.Application) -> None:
    api = build_registry()
    api.add_routes(app)
    document = api.openapi()

    async def openapi(request: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get(PREFIX + "/openapi.json", openapi)
