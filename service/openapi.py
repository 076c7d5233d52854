"""The OpenAPI document of one app: what this server, with these settings, accepts and answers.

Routes declare their bodies and statuses; this adds what depends on the settings (batch and
step limits, auth, rate limit) so that a request valid by the document is one the server
takes, and every status it answers with is documented.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from lam_engine.config import QUERY

from .auth import require_write
from .deps import Runtime
from .routes import v1_routers
from .routes._openapi import install_body_schemas
from .schemas import error_responses

# Any /v1 operation can meet these before its handler runs.
_ALWAYS = (500, 503)


def install_openapi(app: FastAPI, rt: Runtime) -> None:
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            install_body_schemas(schema)
            _apply_limits(schema, rt)
            _add_statuses(app, schema, rt)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _apply_limits(schema: dict[str, Any], rt: Runtime) -> None:
    """Settings-dependent bounds: beyond them the server answers 413 or 422."""
    s = rt.settings
    comps = schema["components"]["schemas"]
    steps_max = min(QUERY.steps_max, s.max_query_steps)
    comps["QueryRequest"]["properties"]["steps"]["maximum"] = steps_max
    comps["QueryRequest"]["properties"]["queries"]["maxItems"] = s.max_query_batch
    comps["EnergyRequest"]["properties"]["states"]["maxItems"] = s.max_query_batch
    comps["StoreRequest"]["properties"]["memories"]["maxItems"] = s.max_store_batch
    comps["DeleteRequest"]["properties"]["ids"]["maxItems"] = s.max_store_batch
    for variant in comps["BankCreate"]["anyOf"]:
        variant["properties"]["dim"]["maximum"] = s.max_dim
    query_op = schema["paths"]["/v1/banks/{bank}/query"]["post"]
    for param in query_op.get("parameters", []):
        if param["name"] == "steps":
            param["schema"]["maximum"] = steps_max


def _add_statuses(app: FastAPI, schema: dict[str, Any], rt: Runtime) -> None:
    """Auth, rate limit and readiness statuses on every /v1 operation; FastAPI's own 422
    (a schema our error envelope replaces) removed."""
    writes = {
        (route.path, method.lower())
        for router in v1_routers()
        for route in router.routes
        if isinstance(route, APIRoute)
        and any(d.dependency is require_write for d in route.dependencies)
        for method in route.methods or ()
    }
    extra = list(_ALWAYS)
    if rt.keys.enabled:
        extra.append(401)
        schemes = schema["components"].setdefault("securitySchemes", {})
        schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
    if rt.settings.rate_limit:
        extra.append(429)
    for path, ops in schema.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            statuses = extra + ([403] if rt.keys.enabled and (path, method) in writes else [])
            responses = op.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]  # FastAPI's guess: these parameters cannot fail
            for status, doc in error_responses(*statuses).items():
                responses.setdefault(str(status), _response_doc(doc))
            if rt.keys.enabled:
                op["security"] = [{"bearerAuth": []}]
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)


def _response_doc(doc: dict[str, Any]) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/ErrorOut"}
    return {"description": doc["description"], "content": {"application/json": {"schema": ref}}}
