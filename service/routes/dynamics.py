"""Dynamics: integrate the two-layer network (v, h) and return its trajectory."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..bodies import json_model, number_array
from ..deps import READ, RtDep, engine_of
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, DynamicsOut, DynamicsRequest, error_responses
from ._openapi import body

router = APIRouter(prefix="/v1", tags=["retrieval"])


@router.post(
    "/banks/{bank}/dynamics",
    response_model=DynamicsOut,
    dependencies=READ,
    openapi_extra=body(DynamicsRequest),
    responses=error_responses(*JSON_BODY, 404, 409),
)
async def dynamics(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, DynamicsRequest)
    arrays = {
        name: None if value is None else number_array(value, name)
        for name, value in (("hidden", req.hidden), ("input", req.input))
    }
    state = number_array(req.state, "state")
    params = req.model_dump(exclude={"state", "hidden", "input"})
    engine = engine_of(rt)
    max_steps = rt.settings.max_dynamics_steps

    def integrate() -> dict[str, Any]:
        result = engine.dynamics(bank, state, **arrays, **params, max_steps=max_steps)
        return result.to_dict()

    return OrjsonResponse(await rt.run(integrate))
