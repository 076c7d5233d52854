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


def query_params_of(model: type[BaseModel], description: str) -> list[dict[str, Any]]:
    """The fields of `model` as optional query parameters, with the model's own bounds."""
    props = model.model_json_schema()["properties"]
    out = []
    for name, prop in props.items():
        # A query string has no null: keep the non-null branch of an optional field.
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        schema = {k: v for k, v in branches[0].items() if k != "title"}
        if "default" in prop and prop["default"] is not None:
            schema["default"] = prop["default"]
        out.append(query_param(name, schema, description))
    return out


def install_body_schemas(openapi: dict[str, Any]) -> None:
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[name] = schema
