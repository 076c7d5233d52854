"""Energy (and optionally its gradient) of given states under a bank's model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..bodies import json_model, number_array
from ..deps import READ, RtDep, engine_of
from ..errors import ApiError
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, EnergyOut, EnergyRequest, error_responses
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
    states = number_array(req.states, "states")
    limit = rt.settings.max_query_batch
    if states.ndim == 2 and states.shape[0] > limit:
        raise ApiError(
            413, "batch_too_large", f"at most {limit} states per request (got {states.shape[0]})",
            {"limit": limit, "got": int(states.shape[0])},
        )  # fmt: skip
    engine = engine_of(rt)

    def compute() -> dict[str, Any]:
        return engine.energy(
            bank, states, beta=req.beta, constants=req.constants, gradient=req.gradient,
            filter=req.filter,
        ).to_dict()  # fmt: skip

    return OrjsonResponse(await rt.run(compute))
