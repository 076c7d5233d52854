"""Banks: create, list, describe, patch, delete, snapshot export/import."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any, BinaryIO, cast

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from lam_engine import PrefilterConfig
from lam_engine.config import SHARDS_MAX
from lam_engine.errors import InvalidParameterError
from lam_engine.texts import text_bank_config

from ..bank_schemas import BankCreate, BankList, BankOut, BankPatch
from ..bodies import json_model, require_media_type
from ..deps import READ, WRITE, RtDep, Runtime, engine_of
from ..errors import ApiError, validation_error
from ..responses import OrjsonResponse
from ..schemas import JSON_BODY, BankPath, error_responses
from ._openapi import BINARY, binary_body, body

router = APIRouter(prefix="/v1", tags=["banks"])
SNAPSHOT_TYPES = ("application/zip", "application/octet-stream", "application/x-lamsnap")
_CHUNK = 1 << 20


@router.post(
    "/banks",
    status_code=201,
    response_model=BankOut,
    dependencies=WRITE,
    openapi_extra=body(BankCreate),
    responses={
        200: {"model": BankOut, "description": "Exists with the same config"},
        **error_responses(*JSON_BODY, 409, 507),
    },
)
async def create_bank(request: Request, rt: RtDep) -> Response:
    req = await json_model(request, BankCreate)
    if req.dim is None and req.embedder is None:  # only a text bank takes its model's dim
        detail = "Field required (it may be left out for a text bank only)"
        raise validation_error([{"loc": ["body", "dim"], "msg": detail, "type": "missing"}])
    if req.dim is not None and req.dim > rt.settings.max_dim:
        raise InvalidParameterError(
            f"dim exceeds this server's limit of {rt.settings.max_dim}",
            {"dim": req.dim, "max_dim": rt.settings.max_dim},
        )
    engine = engine_of(rt)

    def create() -> Any:
        # A text bank's model may load here (seconds, once per process): in the worker.
        config = text_bank_config(req.model_dump(exclude={"name"}))
        _check_bank_limit(rt, req.name)
        return engine.create_bank(req.name, config)

    async with rt.bank_lock:
        info, created = await rt.run(create)
    rt.metrics.set_bank(info)
    return OrjsonResponse(info.to_dict(), status_code=201 if created else 200)


def _check_bank_limit(rt: Runtime, name: str) -> None:
    """Worker thread, under rt.bank_lock: a new name beyond LAM_MAX_BANKS is a 409."""
    names = engine_of(rt).bank_names()
    limit = rt.settings.max_banks
    if len(names) >= limit and name not in names:
        raise ApiError(
            409, "too_many_banks", f"this server holds at most {limit} banks", {"max_banks": limit}
        )


@router.get("/banks", response_model=BankList, dependencies=READ)
async def list_banks(rt: RtDep) -> Response:
    infos = await rt.run(engine_of(rt).list_banks)
    return OrjsonResponse({"banks": [i.to_dict() for i in infos]})


@router.get(
    "/banks/{bank}", response_model=BankOut, dependencies=READ, responses=error_responses(404)
)
async def get_bank(bank: BankPath, rt: RtDep) -> Response:
    info = await rt.run(engine_of(rt).bank_info, bank)
    return OrjsonResponse(info.to_dict())


@router.patch(
    "/banks/{bank}",
    response_model=BankOut,
    dependencies=WRITE,
    openapi_extra=body(BankPatch),
    responses=error_responses(*JSON_BODY, 404, 507),
)
async def patch_bank(bank: BankPath, request: Request, rt: RtDep) -> Response:
    req = await json_model(request, BankPatch)
    engine = engine_of(rt)
    given = req.prefilter.model_dump(exclude_unset=True) if req.prefilter is not None else None

    def update() -> Any:
        prefilter = None
        if given is not None:
            # PATCH merges: fields left out keep the bank's current values.
            current = engine.bank_info(bank).config.prefilter.to_dict()
            prefilter = PrefilterConfig.from_dict({**current, **given})
        forgetting = {
            key: getattr(req, key)
            for key in ("default_ttl_s", "half_life_s")
            if key in req.model_fields_set
        }
        return engine.update_bank(
            bank, beta=req.beta, prefilter=prefilter,
            payload_index=None if req.payload_index is None else dict(req.payload_index),
            **forgetting,
        )  # fmt: skip

    info = await rt.run(update)
    return OrjsonResponse(info.to_dict())


@router.delete(
    "/banks/{bank}",
    status_code=204,
    dependencies=WRITE,
    response_class=Response,
    responses=error_responses(404, 507),
)
async def delete_bank(bank: BankPath, rt: RtDep) -> Response:
    await rt.run(engine_of(rt).delete_bank, bank)
    rt.metrics.forget_bank(bank)
    return Response(status_code=204)


@router.get(
    "/banks/{bank}/snapshot",
    dependencies=READ,
    response_class=Response,
    responses={200: {"description": "The bank as one .lamsnap file",
                     "content": {"application/zip": {"schema": BINARY}}},
               **error_responses(404, 507)},
)  # fmt: skip
async def export_snapshot(bank: BankPath, rt: RtDep) -> Response:
    f = tempfile.TemporaryFile(dir=_tmp_dir(rt))  # noqa: SIM115 (_chunks closes it)
    try:
        await rt.run(engine_of(rt).export_snapshot, bank, f)
        size = f.tell()
        f.seek(0)
    except BaseException:
        f.close()
        raise
    headers = {
        "Content-Disposition": f'attachment; filename="{bank}.lamsnap"',
        "Content-Length": str(size),
    }
    return StreamingResponse(_chunks(f, rt), media_type="application/zip", headers=headers)


async def _chunks(f: IO[bytes], rt: Runtime) -> AsyncIterator[bytes]:
    try:
        while chunk := await rt.run(f.read, _CHUNK):
            yield chunk
    finally:
        f.close()


@router.post(
    "/banks/{bank}/snapshot",
    status_code=201,
    response_model=BankOut,
    dependencies=WRITE,
    openapi_extra=binary_body(
        ("application/octet-stream", "application/zip"), "A snapshot file from GET .../snapshot"
    ),
    responses=error_responses(409, 413, 415, 422, 507),
)
async def import_snapshot(
    bank: BankPath,
    request: Request,
    rt: RtDep,
    replace: bool = Query(False, description="Replace an existing bank of that name"),
    shards: int | None = Query(
        None, ge=1, le=SHARDS_MAX, description="Split it over this many shards (default: as saved)"
    ),
) -> Response:
    require_media_type(request, SNAPSHOT_TYPES)
    # Spool to disk past 32 MiB: snapshots can be far larger than ordinary bodies.
    f = tempfile.SpooledTemporaryFile(max_size=32 << 20, dir=_tmp_dir(rt))  # noqa: SIM115
    try:
        async for chunk in request.stream():
            f.write(chunk)
        f.seek(0)
        engine = engine_of(rt)

        def restore() -> Any:
            _check_bank_limit(rt, bank)
            return engine.import_snapshot(bank, cast(BinaryIO, f), replace=replace, shards=shards)

        async with rt.bank_lock:
            info = await rt.run(restore)
    finally:
        f.close()
    rt.metrics.set_bank(info)
    return OrjsonResponse(info.to_dict(), status_code=201)


def _tmp_dir(rt: Runtime) -> str:
    path = rt.settings.data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
