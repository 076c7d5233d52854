"""Schemathesis hooks (SCHEMATHESIS_HOOKS): the one check the OpenAPI document cannot fully
drive, with the refusals JSON Schema cannot express listed one by one.

`positive_data_acceptance` says a request valid by the schema must not be refused. Our schema
states every bound, pattern and per-model shape, but a few rules depend on the server's state
or on relations JSON Schema has no words for (docs/API.md, "What the OpenAPI document cannot
say"). `positive_data_acceptance_within_state` runs the built-in check and lets through only
those refusals, named by operation and error code; the run excludes the built-in one.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

VECTORS = r"/v1/banks/\{bank\}/(memories|query|energy|dynamics)"
# (method, path template regex, status, error code, message regex): why each is beyond a schema.
BEYOND_SCHEMA: list[tuple[str, str, int, str, str]] = [
    # Rows must have the bank's dim entries (state), all rows the same length, a mask 1 or B
    # rows, `hidden` one entry per memory: lengths tied to state or to other fields.
    ("POST", VECTORS, 422, "dimension_mismatch", ""),
    # Ids unique within a batch: `uniqueItems` compares whole items, not one property.
    ("POST", r"/v1/banks/\{bank\}/memories", 422, "duplicate_id", ""),
    # Which devices exist is the host's state, not the document's.
    ("POST", r"/v1/banks", 422, "device_unavailable", ""),
    # So is which embedder models it can load (API.md "Text memories").
    ("POST", r"/v1/banks", 422, "embedder_unavailable", ""),
    # Whether the server runs in cluster mode (replicas > 1 need it) is its state too.
    ("POST", r"/v1/banks", 422, "cluster_required", ""),
    # Finite inputs whose product (beta * xi . v, |v|^2) leaves the float range (a store
    # with if_novel computes the energy of its memories).
    ("POST", r"/v1/banks/\{bank\}/(query|energy|dynamics|memories)", 422, "numeric_overflow", ""),
    # A bank's model is state: a prefilter applies to Model B banks only.
    ("PATCH", r"/v1/banks/\{bank\}", 422, "invalid_parameter", "Model B banks only"),
    # t_max/dt is a ratio of two fields.
    ("POST", r"/v1/banks/\{bank\}/dynamics", 422, "invalid_parameter", "t_max/dt"),
    # Binary bodies: a schema says "bytes", not "a valid ZIP snapshot" or "a valid .npy".
    ("POST", r"/v1/banks/\{bank\}/snapshot", 422, "invalid_snapshot", ""),
    ("POST", r"/v1/banks/\{bank\}/(memories|query)", 400, "malformed_npy", ""),
    # Filters (lam_engine.filters): nesting depth and the number of conditions are counts
    # over the whole tree; a range needs one bound that is not null; JSON Schema's integer
    # admits 3.0, which cannot be matched exactly; integers must fit 64 bits.
    (
        "POST",
        r"/v1/banks/\{bank\}/(query|energy|memories/(scroll|count|delete))",
        422,
        "invalid_filter",
        "nest at most|conditions|at least one of|floats cannot|64 bits",
    ),
    # A lifetime must end in the future (API.md "Forgetting"): "now" is not in a schema,
    # and neither are ttl_s with expires_at together.
    (
        "POST",
        r"/v1/banks/\{bank\}/memories",
        422,
        "invalid_parameter",
        r"expires_at (must be in the future|must be an RFC 3339)|ttl_s and expires_at",
    ),
    # Whether a bank embeds text (has an embedder) is its state; `dim` may be left out
    # only when `embedder` is given, and a mask applies to vectors only (rules across fields).
    ("POST", r"/v1/banks/\{bank\}/(memories|query|energy)", 422, "not_a_text_bank", ""),
    ("POST", r"/v1/banks", 422, "validation_error", "left out for a text bank only"),
    ("POST", r"/v1/banks/\{bank\}/query", 422, "invalid_parameter", "not to texts"),
    # Which memories pass a filter is the bank's state.
    ("POST", r"/v1/banks/\{bank\}/(query|energy)", 409, "empty_selection", ""),
    # JSON Schema bounds items, not bytes: a body beyond LAM_MAX_BODY_BYTES.
    ("[A-Z]+", r".*", 413, "body_too_large", ""),
]


def beyond_schema(method: str, path: str, status: int, body: Any) -> bool:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return False
    code, message = str(err.get("code")), str(err.get("message"))
    return any(
        re.fullmatch(m, method) and re.fullmatch(p, path) and status == s and code == c
        and re.search(msg, message)
        for m, p, s, c, msg in BEYOND_SCHEMA
    )  # fmt: skip


@schemathesis.check
def positive_data_acceptance_within_state(ctx: Any, response: Any, case: Any) -> bool | None:
    try:
        return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]
    except RejectedPositiveData:
        where = (case.method.upper(), case.operation.path)
        if beyond_schema(*where, response.status_code, _json(response)):
            return None
        raise


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
