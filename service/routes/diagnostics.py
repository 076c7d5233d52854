"""Diagnostics: separations Δ_i and the fixed-point condition of every memory."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from lam_engine.config import BETA_MAX

from ..deps import READ, RtDep, engine_of
from ..responses import OrjsonResponse
from ..schemas import BankPath, DiagnosticsOut, error_responses

router = APIRouter(prefix="/v1", tags=["retrieval"])


@router.get(
    "/banks/{bank}/diagnostics",
    response_model=DiagnosticsOut,
    dependencies=READ,
    responses=error_responses(404, 409, 422),
)
async def diagnostics(
    bank: BankPath,
    rt: RtDep,
    beta: float | None = Query(
        None, gt=0, le=BETA_MAX, allow_inf_nan=False, description="default: the bank's β"
    ),
    limit: int = Query(100, ge=1, le=1000, description="failing ids per page"),
    offset: int = Query(0, ge=0, le=1 << 40),
) -> Response:
    engine = engine_of(rt)

    def compute() -> dict[str, Any]:
        result = engine.diagnostics(bank, beta=beta, limit=limit, offset=offset)
        return result.to_dict()

    return OrjsonResponse(await rt.run(compute))
