"""Memories: store (JSON or .npy), get, delete one, delete many, scroll."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from lam_engine import Engine
from lam_engine.gcpause import gc_paused
from lam_engine.results import UpsertResult

from ..bodies import JSON as JSON_TYPE
from ..bodies import NPY, json_model, number_array, parse_npy, parse_object, require_media_type
from ..deps import READ, WRITE, RtDep, engine_of
from ..errors import ApiError, validation_error
from ..filter_schemas import CountOut, CountRequest, ScrollRequest
from ..openapi_shapes import CURSOR_PATTERN
from ..responses import OrjsonResponse
from ..schemas import (
    JSON_BODY,
    BankPath,
    DeletedOut,
    DeleteRequest,
    MemoryIdPath,
    MemoryOut,
    ReinforcedOut,
    ReinforceRequest,
    ScrollOut,
    StoreOut,
    StoreRequest,
    error_responses,
)
from ..text import has_text, store_text_memories
from ._openapi import body

router = APIRouter(prefix="/v1", tags=["memories"])
_MEMORY_KEYS = frozenset(("id", "vector", "payload", "text", "ttl_s", "expires_at", "strength"))
_FORGETTING = ("strength", "ttl_s", "expires_at")  # API.md "Forgetting": engine-validated


@router.post(
    "/banks/{bank}/memories",
    response_model=StoreOut,
    dependencies=WRITE,
    openapi_extra=body(
        StoreRequest, npy="float32 array (n, dim); ids are content addresses, no payloads"
    ),
    responses=error_responses(*JSON_BODY, 404, 507),
)
async def store(bank: BankPath, request: Request, rt: RtDep) -> Response:
    kind = require_media_type(request, (JSON_TYPE, NPY))
    raw = await request.body()
    engine, limit = engine_of(rt), rt.settings.max_store_batch
    # Parsing a bulk body takes tens of ms (a 10k × 384 JSON batch: ~0.5 s): off the event
    # loop, in the same worker call as the write.
    result = await rt.run(_store_sync, engine, bank, kind, raw, limit)
    return OrjsonResponse(result.to_dict())


@gc_paused()  # a JSON batch parses into ~10⁴ fresh containers (gcpause.py)
def _store_sync(engine: Engine, bank: str, kind: str, raw: bytes, limit: int) -> UpsertResult:
    ids: list[str | None] | None = None
    payloads: list[dict[str, Any] | None] | None = None
    if_novel = None  # an .npy body has no room for it: JSON bodies only
    extras: dict[str, list[Any]] = {}
    if kind == NPY:
        vectors = parse_npy(raw, "vectors")
        _check_batch(vectors.shape[0], limit)
    else:
        data = parse_object(raw)
        memories = data.get("memories")
        if isinstance(memories, list):
            _check_batch(len(memories), limit)
        if_novel = novelty_tau(data.pop("if_novel", None))
        if set(data) == {"memories"} and isinstance(memories, list) and has_text(memories):
            return store_text_memories(
                engine, bank, memories, _memory_problem, if_novel, forgetting_columns(memories)
            )
        vectors, ids, payloads = split_memories(data, raw)
        assert isinstance(memories, list)  # split_memories refused anything else
        extras = forgetting_columns(memories)
    return engine.upsert(bank, vectors, ids, payloads, if_novel=if_novel, **extras)


def forgetting_columns(memories: list[Any]) -> dict[str, list[Any]]:
    """The batch's strengths / ttl_s / expires_at as engine keyword columns (given ones)."""
    return {
        ("strengths" if key == "strength" else key): [m.get(key) for m in memories]
        for key in _FORGETTING
        if any(key in m for m in memories)
    }


def novelty_tau(gate: Any) -> Any:
    """τ of {"if_novel": {"energy_above": τ}} (None: not gated); the engine checks it is
    finite (JSON has no NaN or Infinity, but an integer may be beyond the float range)."""
    if gate is None:
        return None
    problem: tuple[list[str], str] | None = None
    if not isinstance(gate, dict):
        problem = ([], 'Input should be an object {"energy_above": τ}')
    elif set(gate) - {"energy_above"}:
        problem = ([sorted(set(gate) - {"energy_above"})[0]], "Extra inputs are not permitted")
    elif "energy_above" not in gate:
        problem = (["energy_above"], "Field required")
    elif isinstance(gate["energy_above"], bool) or not isinstance(
        gate["energy_above"], (int, float)
    ):
        problem = (["energy_above"], "Input should be a finite number")
    if problem is not None:
        loc = ["body", "if_novel", *problem[0]]
        raise validation_error([{"loc": loc, "msg": problem[1], "type": "invalid"}])
    return gate["energy_above"]


def _check_batch(n: int, limit: int) -> None:
    if n > limit:
        raise ApiError(
            413, "batch_too_large", f"at most {limit} memories per request (got {n})",
            {"limit": limit, "got": n},
        )  # fmt: skip


def split_memories(
    data: dict[str, Any], raw: bytes | None = None
) -> tuple[np.ndarray, list[str | None] | None, list[dict[str, Any] | None] | None]:
    """Validate {"memories": [...]} by hand (fast for 10k items) into vectors, ids, payloads."""
    if set(data) != {"memories"}:
        extra = sorted(set(data) - {"memories"})
        msg = "Field required" if "memories" not in data else "Extra inputs are not permitted"
        loc = ["body", extra[0] if extra else "memories"]
        raise validation_error([{"loc": loc, "msg": msg, "type": "invalid"}])
    memories = data["memories"]
    if not isinstance(memories, list):
        raise validation_error(
            [
                {
                    "loc": ["body", "memories"],
                    "msg": "Input should be a valid list",
                    "type": "list_type",
                }
            ]
        )
    ids: list[str | None] = []
    payloads: list[dict[str, Any] | None] = []
    vectors: list[Any] = []
    for i, m in enumerate(memories):
        problem = _memory_problem(m)
        if problem:
            raise validation_error(
                [
                    {
                        "loc": ["body", "memories", str(i), problem[0]],
                        "msg": problem[1],
                        "type": "invalid",
                    }
                ]
            )
        ids.append(m.get("id"))
        payloads.append(m.get("payload"))
        vectors.append(m["vector"])
    array = number_array(vectors, "vectors", raw)
    any_id = any(i is not None for i in ids)
    any_payload = any(p is not None for p in payloads)
    return array, (ids if any_id else None), (payloads if any_payload else None)


def _memory_problem(m: Any) -> tuple[str, str] | None:
    if not isinstance(m, dict):
        return "", "a memory must be an object"
    if not _MEMORY_KEYS.issuperset(m):
        return sorted(set(m) - _MEMORY_KEYS)[0], "Extra inputs are not permitted"
    if "vector" not in m and "text" not in m:  # a text bank's memory may give text instead
        return "vector", "Field required"
    if "vector" in m and not isinstance(m["vector"], list):
        return "vector", "Input should be a valid list of numbers"
    i = m.get("id")
    if i is not None and not (isinstance(i, str) and 0 < len(i) <= 512):
        return "id", "id must be a string of 1 to 512 characters"
    p = m.get("payload")
    if p is not None and not isinstance(p, dict):
        return "payload", "payload must be a JSON object or null"
    return None


@router.post(
    "/banks/{bank}/memories/reinforce",
    response_model=ReinforcedOut,
    dependencies=WRITE,
    openapi_extra=body(ReinforceRequest),
    responses=error_responses(*JSON_BODY, 404, 507),
)
async def reinforce(bank: BankPath, request: Request, rt: RtDep) -> Response:
    """t_μ = now (and the strength, when given) for the ids; unknown ids are not counted."""
    req = await json_model(request, ReinforceRequest)
    _check_batch(len(req.ids), rt.settings.max_store_batch)
    n = await rt.run(engine_of(rt).reinforce, bank, req.ids, req.strength)
    return OrjsonResponse({"reinforced": n})


@router.get(
    "/banks/{bank}/memories/{memory_id}",
    response_model=MemoryOut,
    dependencies=READ,
    responses=error_responses(404, 422),
)
async def get_memory(bank: BankPath, memory_id: MemoryIdPath, rt: RtDep) -> Response:
    record = await rt.run(engine_of(rt).get_memory, bank, memory_id)
    return OrjsonResponse(record.to_dict())


@router.delete(
    "/banks/{bank}/memories/{memory_id}",
    status_code=204,
    dependencies=WRITE,
    response_class=Response,
    responses=error_responses(404, 422, 507),
)
async def delete_memory(bank: BankPath, memory_id: MemoryIdPath, rt: RtDep) -> Response:
    await rt.run(engine_of(rt).delete_memory, bank, memory_id)
    return Response(status_code=204)


@router.post(
    "/banks/{bank}/memories/delete",
    response_model=DeletedOut,
    dependencies=WRITE,
    openapi_extra=body(DeleteRequest),
    responses=error_responses(*JSON_BODY, 404, 507),
)
async def delete_memories(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, DeleteRequest)
    given = req.model_fields_set & {"ids", "filter"}
    if len(given) != 1:
        raise ApiError(422, "invalid_parameter", "give exactly one of ids and filter")
    if req.ids is not None:
        _check_batch(len(req.ids), rt.settings.max_store_batch)
        deleted = await rt.run(engine_of(rt).delete_memories, bank, req.ids)
    else:
        if req.filter is None:  # parse_filter reads null as "no filter": every memory
            reason = "a delete's filter must be an object (null would select every memory)"
            raise ApiError(422, "invalid_filter", reason, {"path": "filter", "reason": reason})
        flt = req.filter
        deleted = await rt.run(partial(engine_of(rt).delete_memories, bank, filter=flt))
    return OrjsonResponse({"deleted": deleted})


@router.post(
    "/banks/{bank}/memories/scroll",
    response_model=ScrollOut,
    dependencies=READ,
    openapi_extra=body(ScrollRequest),
    responses=error_responses(*JSON_BODY, 404),
)
async def scroll_filtered(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, ScrollRequest)
    page = partial(
        engine_of(rt).scroll, bank, req.limit, req.cursor,
        with_vectors=req.with_vectors, filter=req.filter,
    )  # fmt: skip
    records, next_cursor = await rt.run(page)
    return OrjsonResponse({"memories": [r.to_dict() for r in records], "next_cursor": next_cursor})


@router.post(
    "/banks/{bank}/memories/count",
    response_model=CountOut,
    dependencies=READ,
    openapi_extra=body(CountRequest),
    responses=error_responses(*JSON_BODY, 404),
)
async def count(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, CountRequest)
    return OrjsonResponse({"count": await rt.run(engine_of(rt).count, bank, req.filter)})


@router.get(
    "/banks/{bank}/memories",
    response_model=ScrollOut,
    dependencies=READ,
    responses=error_responses(404, 422),
)
async def scroll(
    bank: BankPath,
    rt: RtDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(
        None, pattern=CURSOR_PATTERN, description="next_cursor of the previous page"
    ),
    with_vectors: bool = Query(True),
) -> Response:
    records, next_cursor = await rt.run(
        engine_of(rt).scroll, bank, limit, cursor, with_vectors=with_vectors
    )
    return OrjsonResponse({"memories": [r.to_dict() for r in records], "next_cursor": next_cursor})
