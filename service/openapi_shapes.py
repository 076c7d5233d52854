"""JSON Schema fragments that say exactly what the boundary checks, for the OpenAPI document.

Pydantic cannot derive these: vector fields skip per-float validation (service.bodies checks
them with one numpy conversion), and model_params are checked by lam_engine.config against
the bank's model. What JSON Schema cannot state (rows of the bank's `dim`, `hidden` one entry
per memory, t_max/dt within the step limit, well-formed binary bodies...) is listed in
docs/api-guide.md ("The OpenAPI document and fuzzing").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lam_engine.config import F_KINDS, MAX_DIM, MODELS
from lam_engine.vectors import MAX_ID_LENGTH

JsonDict = dict[str, Any]
ID_MAX = MAX_ID_LENGTH
# Vectors are stored as float32: a finite JSON number beyond this overflows to Inf (422).
FLOAT32_MAX = 3.4028234663852886e38
# lam_engine.config.validate_model_params: power is an integer in [1, 64] (not exported there).
POWER_MIN, POWER_MAX = 1, 64
# lam_engine.config.hidden_function: the defaults of F and power for Models A and C.
F_DEFAULT, POWER_DEFAULT = "rectified_power", 3
# Engine scroll cursors are decimal row keys (int64, so at most 18 digits stay in range).
CURSOR_PATTERN = r"^[0-9]{1,18}$"


def vector_schema() -> JsonDict:
    number = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    return {"type": "array", "items": number, "minItems": 1, "maxItems": MAX_DIM}


def matrix_schema() -> JsonDict:
    return {"type": "array", "items": vector_schema(), "minItems": 1}


def bool_matrix_schema() -> JsonDict:
    row = {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": MAX_DIM}
    return {"anyOf": [{"type": "array", "items": row, "minItems": 1}, row]}


def memories_schema() -> JsonDict:
    return {"minItems": 1}


def model_params_schema(model: str) -> JsonDict:
    """What validate_model_params accepts for `model`: B takes no keys, A and C their own."""
    if model == "B":
        return {"type": "object", "maxProperties": 0, "additionalProperties": False}
    props: JsonDict = {
        "F": {"enum": list(F_KINDS), "default": F_DEFAULT},
        "power": {
            "type": "integer", "minimum": POWER_MIN, "maximum": POWER_MAX,
            "default": POWER_DEFAULT,
        },
        "activation": {"const": "sign" if model == "A" else "spherical"},
    }  # fmt: skip
    if model == "C":
        props["alpha"] = {"type": "number", "exclusiveMinimum": 0}
    return {"type": "object", "properties": props, "additionalProperties": False}


def bank_create_schema(*examples: JsonDict) -> Callable[[JsonDict], None]:
    """BankCreate as one object schema per model: model_params depend on `model`."""

    def rewrite(schema: JsonDict) -> None:
        props = schema.pop("properties")
        required = list(schema.pop("required", []))
        for key in ("type", "additionalProperties"):
            schema.pop(key, None)
        variants = []
        for model in MODELS:
            model_prop: JsonDict = {"const": model}
            if model == "B":
                model_prop["default"] = "B"  # leaving `model` out means B
            params = {**model_params_schema(model), "default": {}}
            variants.append({
                "title": f"BankCreate{model}",
                "type": "object",
                "properties": {**props, "model": model_prop, "model_params": params},
                "required": required if model == "B" else [*required, "model"],
                "additionalProperties": False,
            })  # fmt: skip
        schema["anyOf"] = variants
        schema["examples"] = list(examples)

    return rewrite
