"""Query: retrieve by Model B energy descent (JSON or .npy body), through the micro-batcher."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..bodies import (
    JSON,
    NPY,
    bool_array,
    number_array,
    parse_npy,
    parse_object,
    query_params,
    require_media_type,
    validate,
)
from ..deps import READ, RtDep
from ..errors import ApiError
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, QueryOut, QueryParams, QueryRequest, error_responses
from ._openapi import body, query_params_of

router = APIRouter(prefix="/v1", tags=["retrieval"])
_PARAM_NAMES = tuple(QueryParams.model_fields)
_NPY_ONLY = (
    "Applies to an application/x-npy body; with a JSON body it is checked but the body's "
    "value counts."
)
_openapi = body(
    QueryRequest, npy="float32 array (B, dim) of queries; parameters in the query string"
)
_openapi["parameters"] = query_params_of(QueryParams, _NPY_ONLY)


@router.post(
    "/banks/{bank}/query",
    response_model=QueryOut,
    dependencies=READ,
    openapi_extra=_openapi,
    responses=error_responses(*JSON_BODY, 404, 409),
)
async def query(bank: BankPath, request: Request, rt: RtDep) -> Response:
    kind = require_media_type(request, (JSON, NPY))
    raw = await request.body()
    # Checked for both body kinds: the OpenAPI document declares them on the operation, and
    # a parameter that is out of range must not pass silently.
    params = validate(QueryParams, query_params(request, _PARAM_NAMES), "query")
    if kind == NPY:
        queries = parse_npy(raw, "queries")
        mask = None
    else:
        req = validate(QueryRequest, parse_object(raw))
        queries = number_array(req.queries, "queries", raw)
        mask = None if req.mask is None else bool_array(req.mask, "mask")
        params = req
    limit = rt.settings.max_query_batch
    if queries.ndim == 2 and queries.shape[0] > limit:
        raise ApiError(
            413, "batch_too_large", f"at most {limit} queries per request (got {queries.shape[0]})",
            {"limit": limit, "got": int(queries.shape[0])},
        )  # fmt: skip
    if params.steps > rt.settings.max_query_steps:
        raise ApiError(
            422, "invalid_parameter", f"steps must be at most {rt.settings.max_query_steps}",
            {"steps": params.steps, "max_steps": rt.settings.max_query_steps},
        )  # fmt: skip
    assert rt.batcher is not None
    out = await rt.batcher.query(bank, queries, mask, params.model_dump(include=set(_PARAM_NAMES)))
    return OrjsonResponse(out)
