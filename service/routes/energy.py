"""Energy (and optionally its gradient) of given states under a bank's model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from lam_engine.text_ops import embed_queries

from ..bodies import json_model, number_array
from ..deps import READ, RtDep, engine_of
from ..errors import ApiError
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, EnergyOut, EnergyRequest, error_responses
from ..text import one_form
from ._openapi import body

router = APIRouter(prefix="/v1", tags=["retrieval"])


@router.post(
    "/banks/{bank}/energy",
    response_model=EnergyOut,
    dependencies=READ,
    openapi_extra=body(EnergyRequest),
    responses=error_responses(*JSON_BODY, 404, 409),
)
async def energy(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, EnergyRequest)
    one_form(req, "states")
    texts = req.texts
    states = None if texts is not None else number_array(req.states, "states")
    n = len(texts) if texts is not None else states.shape[0] if states.ndim == 2 else 1
    limit = rt.settings.max_query_batch
    if n > limit:
        raise ApiError(
            413, "batch_too_large", f"at most {limit} states per request (got {n})",
            {"limit": limit, "got": n},
        )  # fmt: skip
    engine = engine_of(rt)

    def compute() -> dict[str, Any]:
        # Texts are embedded here, in the worker thread, by the bank's model.
        v = states if texts is None else embed_queries(engine, bank, texts)
        return engine.energy(
            bank, v, beta=req.beta, constants=req.constants, gradient=req.gradient,
            filter=req.filter,
        ).to_dict()  # fmt: skip

    return OrjsonResponse(await rt.run(compute))
