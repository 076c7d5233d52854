"""OpenAPI helpers for routes that read their body themselves (orjson / .npy)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

BINARY = {"type": "string", "format": "binary"}
# Request models referenced by hand-parsed routes; service.main adds them to components.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def body(
    model: type[BaseModel], *, npy: str | None = None, required: bool = True
) -> dict[str, Any]:
    """openapi_extra declaring a JSON body of `model` (and optionally an .npy alternative)."""
    BODY_MODELS[model.__name__] = model
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    }
    if npy is not None:
        content["application/x-npy"] = {"schema": {**BINARY, "description": npy}}
    return {"requestBody": {"required": required, "content": content}}


def binary_body(media_types: tuple[str, ...], description: str) -> dict[str, Any]:
    schema = {**BINARY, "description": description}
    content = {media_type: {"schema": schema} for media_type in media_types}
    return {"requestBody": {"required": True, "content": content}}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def install_body_schemas(openapi: dict[str, Any]) -> None:
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[name] = schema
