"""The OpenAPI document agrees with the server: defaults and bounds come from lam_engine.config,
the schema's bounds match the validators, and a 405 lists every method of its path."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from lam_engine.config import MODELS, PrefilterConfig, validate_model_params
from lam_engine.errors import InvalidParameterError
from service import Settings, create_app
from service.openapi_shapes import model_params_schema
from tests.api.api_support import assert_error
from tests.harness import REPO

# Runs in a fresh interpreter: schemas read config when they are defined.
_CHANGED_DEFAULTS = """
import dataclasses, json
import lam_engine.config as c
c.QUERY = dataclasses.replace(c.QUERY, top_k=7, tol=0.25, steps_min=2, steps_max=77)
c.DYNAMICS = dataclasses.replace(c.DYNAMICS, tau_f=2.5, record_every=3)
c.MAX_DIM = 4096
from service import Settings, create_app
print(json.dumps(create_app(Settings(data_dir="unused")).openapi()))
"""


def test_a_default_changed_in_config_shows_in_the_openapi_document() -> None:
    out = subprocess.run([sys.executable, "-c", _CHANGED_DEFAULTS], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    doc = json.loads(out)
    comps = doc["components"]["schemas"]
    query = comps["QueryRequest"]["properties"]
    assert query["top_k"]["default"] == 7 and query["tol"]["default"] == 0.25
    assert query["steps"]["maximum"] == 77  # also the default of LAM_MAX_QUERY_STEPS
    assert query["steps"]["minimum"] == 2
    params = doc["paths"]["/v1/banks/{bank}/query"]["post"]["parameters"]
    assert {p["name"]: p["schema"].get("default") for p in params}["top_k"] == 7
    dynamics = comps["DynamicsRequest"]["properties"]
    assert dynamics["tau_f"]["default"] == 2.5 and dynamics["record_every"]["default"] == 3
    assert {v["properties"]["dim"]["maximum"] for v in comps["BankCreate"]["anyOf"]} == {4096}


def _valid_by_schema(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _valid_by_config(model: str, params: dict[str, Any]) -> bool:
    try:
        validate_model_params(model, params)
    except InvalidParameterError:
        return False
    return True


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "params",
    [{}, {"power": 0}, {"power": 1}, {"power": 64}, {"power": 65}, {"power": True},
     {"F": "exp"}, {"F": "power"}, {"F": "rectified_power"}, {"F": "cubic"}, {"F": None},
     {"activation": "sign"}, {"activation": "spherical"}, {"alpha": 0.5}, {"alpha": 0},
     {"alpha": -1.0}, {"beta": 1.0}],
)  # fmt: skip
def test_model_params_schema_accepts_what_config_accepts(
    model: str, params: dict[str, Any]
) -> None:
    schema = model_params_schema(model)
    assert _valid_by_schema(schema, params) == _valid_by_config(model, params), params


def test_prefilter_schema_bounds_are_the_configs() -> None:
    from service.bank_schemas import PrefilterSpec

    props = PrefilterSpec.model_json_schema()["properties"]
    for f in fields(PrefilterConfig):
        prop = props[f.name]
        prop = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
        assert prop.get("default", props[f.name].get("default")) == f.default, f.name
        if prop.get("type") != "integer":
            continue
        lo, hi = prop["minimum"], prop["maximum"]
        for value, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
            try:
                PrefilterConfig(**{f.name: value}).validate()  # type: ignore[arg-type]
                accepted = True
            except InvalidParameterError:
                accepted = False
            assert accepted == ok, (f.name, value)


def test_405_allow_lists_every_method_of_the_path(client: TestClient) -> None:
    allow = {
        "/v1/banks": {"GET", "POST"},
        "/v1/banks/x": {"GET", "PATCH", "DELETE"},
        "/v1/banks/x/memories": {"GET", "POST"},
        "/v1/banks/x/memories/delete": {"POST"},  # the literal path, not /memories/{memory_id}
        "/v1/banks/x/memories/m1": {"GET", "DELETE"},
        "/v1/banks/x/snapshot": {"GET", "POST"},
    }
    for path, methods in allow.items():
        r = client.options(path)
        assert_error(r, 405, "method_not_allowed")
        assert {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"} == methods, path


def test_integers_may_be_spelled_3_0_but_not_as_strings(client: TestClient) -> None:
    assert client.post("/v1/banks", json={"name": "a", "dim": 3.0}).status_code == 201
    body = {"name": "c", "dim": 3, "model": "A", "model_params": {"power": 2.0}}
    assert client.post("/v1/banks", json=body).status_code == 201
    assert_error(client.post("/v1/banks", json={"name": "b", "dim": "3"}), 422)
    assert_error(client.post("/v1/banks", json={"name": "b", "dim": 3.5}), 422)


def test_without_keys_or_rate_limit_no_401_403_429_is_documented(tmp_path: Any) -> None:
    doc = create_app(Settings(data_dir=tmp_path)).openapi()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert not {"401", "403", "429"} & set(op["responses"]) or path == "/metrics"
    keyed = create_app(Settings(data_dir=tmp_path, api_keys="k:write")).openapi()
    ops = keyed["paths"]["/v1/banks"]
    assert "403" in ops["post"]["responses"] and "403" not in ops["get"]["responses"]
    assert "401" in ops["get"]["responses"]


def test_a_ragged_mask_is_a_dimension_mismatch(client: TestClient, bank: str) -> None:
    body = {"queries": [[1.0, 0, 0, 0], [0, 1.0, 0, 0]], "mask": [[True], [True, False]]}
    assert_error(client.post(f"/v1/banks/{bank}/query", json=body), 422, "dimension_mismatch")
