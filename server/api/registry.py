"""A small API route registry: each endpoint declares its method, path, summary and pydantic
models once; the registry validates input at the edge and builds the OpenAPI document from the
same declarations, so the document cannot drift from the code."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from cases.catalogue import N_
from cases.errors import Invalid

PREFIX = "/api/v1"

ApiHandler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: ApiHandler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: bool = True
    status: int = 200
    response: type[BaseModel] | None = None


@dataclass
class ApiRegistry:
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        auth: bool = True,
        status: int = 200,
        response: type[BaseModel] | None = None,
    ) -> Callable[[ApiHandler], ApiHandler]:
        def register(handler: ApiHandler) -> ApiHandler:
            self.endpoints.append(
                Endpoint(method, path, handler, summary, tag, body, query, auth, status, response)
            )
            return handler

        return register

    def add_routes(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, PREFIX + endpoint.path, _wrap(endpoint))

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
        for e in self.endpoints:
            op: dict[str, Any] = {
                "summary": e.summary,
                "tags": [e.tag],
                "operationId": e.handler.__name__,
                "responses": {
                    str(e.status): {"description": "OK"},
                    "default": {
                        "description": "Error",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                },
            }
            if e.response is not None:
                op["responses"][str(e.status)]["content"] = {
                    "application/json": {"schema": _ref(e.response, schemas)}
                }
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}
                for name in _path_params(e.path)
            ]
            if e.query is not None:
                for name, prop in e.query.model_json_schema()["properties"].items():
                    params.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": False,
                            "schema": _strip_titles(prop),
                        }
                    )
            if params:
                op["parameters"] = params
            if e.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(e.body, schemas)}},
                }
            if e.auth:
                op["security"] = [{"bearer": []}, {"session": []}]
            paths.setdefault(PREFIX + e.path, {})[e.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "Yuntiao API",
                "version": "1",
                "description": "Cases, parties, dispatch and audit of the Yuntiao mediation "
                "platform. Authenticate with `Authorization: Bearer <token>` "
                "(POST /api/v1/auth/token). Errors are "
                '`{"error": {"code", "message"}}`.',
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": "yuntiao_session",
                        "description": "Browser session; unsafe methods also need the "
                        "X-CSRF-Token header.",
                    },
                },
            },
        }


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        if endpoint.body is not None:
            kwargs["body"] = endpoint.body.model_validate(await read_json(request))
        if endpoint.query is not None:
            kwargs["query"] = endpoint.query.model_validate(dict(request.query))
        for name in _path_params(endpoint.path):
            raw = request.match_info[name]
            if not raw.isdigit() or len(raw) > 12:
                raise web.HTTPNotFound()
            kwargs[name] = int(raw)
        return await endpoint.handler(request, **kwargs)

    handler.__name__ = endpoint.handler.__name__
    return handler


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise Invalid(
            N_("Send the request body as JSON (Content-Type: application/json)."),
            code="json_required",
        )
    try:
        return json.loads(await request.text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(N_("The request body is not valid JSON."), code="invalid_json") from exc


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False, default=str)
    )
