"""Query: retrieve by Model B energy descent (JSON or .npy body), through the micro-batcher.

The body is parsed and validated once, here, into a `QueryInput` (lam_engine.inputs); the
batcher joins those and the engine trusts them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from lam_engine.inputs import QueryInput

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
from ..deps import READ, RtDep, engine_of
from ..errors import ApiError
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, QueryOut, QueryParams, QueryRequest, error_responses
from ..text import TextQuery, one_form
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
# Bodies up to this size are parsed on the event loop: a one-query JSON body (d = 384,
# ≈ 8 KB) parses and validates in ≈ 50 µs of CPU, less than the hop to a worker thread and
# back (≈ 150 µs of CPU, measured); larger ones (≈ 0.3 ms per 64 KiB) go to the worker
# pool so that a bulk query never stalls the loop.
INLINE_PARSE_BYTES = 32 << 10


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
    args = (kind, raw, query_params(request, _PARAM_NAMES), rt.settings.max_query_batch,
            rt.settings.max_query_steps)  # fmt: skip
    q = parse_query(*args) if len(raw) <= INLINE_PARSE_BYTES else await rt.run(parse_query, *args)
    if isinstance(q, TextQuery):  # texts: embedded by the bank's model, in a worker thread
        q = await rt.run(q.embedded, engine_of(rt), bank)
    assert rt.batcher is not None
    return OrjsonResponse(await rt.batcher.query(bank, q))


def parse_query(
    kind: str, raw: bytes, qs: dict[str, str], limit: int, max_steps: int
) -> QueryInput | TextQuery:
    """The request as a validated QueryInput (typed errors: 400, 413, 422)."""
    # Checked for both body kinds: the OpenAPI document declares them on the operation, and
    # a parameter that is out of range must not pass silently.
    params = validate(QueryParams, qs, "query")
    flt = None
    if kind == NPY:
        queries = parse_npy(raw, "queries")
        mask = None
    else:
        req = validate(QueryRequest, parse_object(raw))
        one_form(req, "queries")
        if req.texts is not None:
            return _text_query(req, limit, max_steps)
        queries = number_array(req.queries, "queries", raw)
        mask = None if req.mask is None else bool_array(req.mask, "mask")
        params, flt = req, req.filter
    _check_limits(queries.shape[0] if queries.ndim == 2 else 1, params.steps, limit, max_steps)
    return QueryInput.build(
        queries, mask=mask, beta=params.beta, steps=params.steps, tol=params.tol,
        top_k=params.top_k, with_payload=params.with_payload,
        with_vectors=params.with_vectors, exact=params.exact, filter=flt,
    )  # fmt: skip


def _check_limits(batch: int, steps: int, limit: int, max_steps: int) -> None:
    if batch > limit:
        raise ApiError(
            413, "batch_too_large", f"at most {limit} queries per request (got {batch})",
            {"limit": limit, "got": batch},
        )  # fmt: skip
    if steps > max_steps:
        raise ApiError(
            422, "invalid_parameter", f"steps must be at most {max_steps}",
            {"steps": steps, "max_steps": max_steps},
        )  # fmt: skip


def _text_query(req: QueryRequest, limit: int, max_steps: int) -> TextQuery:
    _check_limits(len(req.texts), req.steps, limit, max_steps)
    params = {name: getattr(req, name) for name in _PARAM_NAMES}
    return TextQuery(list(req.texts), {**params, "filter": req.filter})
