"""`AsyncTextBank`: `TextBank`'s operations over an `AsyncClient` (the same plans, awaited)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..async_client import AsyncClient
from ..errors import InvalidInput, LamClientError, NotFound
from ..models import QueryResponse
from ._textbank import (
    STORE_BATCH,
    BankBase,
    BankSpec,
    Hit,
    HitFilter,
    MetadataFilter,
    Recall,
    as_matrix,
    dedupe_last,
    hit_of_memory,
    hits_of,
    is_steps_refusal,
    missing,
    search_plan,
)


class AsyncTextBank(BankBase):
    """The same over an `AsyncClient` (HTTP)."""

    def __init__(self, client: AsyncClient, spec: BankSpec) -> None:
        super().__init__(spec)
        self.client = client

    async def ensure(self, dim: int | None = None) -> bool:
        if self.dim is not None:
            return True
        try:
            self.dim = (await self.client.get_bank(self.name)).dim
        except NotFound:
            if dim is None:
                return False
            bank = await self.client.create_bank(self.name, dim, **self._create_args(dim))
            self.dim = bank.dim
        return True

    async def add(self, vectors: Any, ids: list[str], payloads: list[dict[str, Any]]) -> list[str]:
        xi = as_matrix(vectors)  # (n, d)
        if len(ids) == 0:
            return []
        await self.ensure(xi.shape[1])
        uids, uxi, upay = dedupe_last(ids, xi, payloads)
        for s in range(0, len(uids), STORE_BATCH):
            e = s + STORE_BATCH
            try:
                await self.client.store(self.name, uxi[s:e], ids=uids[s:e], payloads=upay[s:e])
            except NotFound:
                # The bank went away since we learned its dim (deleted by someone else):
                # create it again, once, and store there.
                self.dim = None
                await self.ensure(xi.shape[1])
                await self.client.store(self.name, uxi[s:e], ids=uids[s:e], payloads=upay[s:e])
        return ids

    async def _cue_query(self, vector: Any, top: int, with_vectors: bool) -> QueryResponse:
        if self.steps0 is not False:
            try:
                kw = self._cue_kwargs(top, with_vectors, True)
                r = await self.client.query(self.name, vector, **kw)
                self.steps0 = True
                return r
            except InvalidInput as exc:
                if not is_steps_refusal(exc):
                    raise
                self.steps0 = False
        kw = self._cue_kwargs(top, with_vectors, False)
        return await self.client.query(self.name, vector, **kw)

    async def search(
        self,
        vector: Any,
        k: int,
        flt: MetadataFilter | None = None,
        with_vectors: bool = False,
        where: HitFilter | None = None,
    ) -> Recall | None:
        if k <= 0 or not await self.ensure():
            return None
        plan = search_plan(k, flt, where)
        top = next(plan)
        try:
            while True:
                res = (await self._cue_query(vector, top, with_vectors))[0]
                top = plan.send(hits_of(res))
        except StopIteration as done:
            # Scored at the cue either way: report it as API.md reports steps 0.
            return Recall(done.value, res.energy, res.state, 0, False)
        except LamClientError as exc:
            if missing(exc):
                return None
            raise

    async def get_many(self, ids: Sequence[str]) -> list[Hit]:
        out = []
        for i in ids:
            try:
                m = await self.client.get(self.name, i)
            except NotFound:
                continue
            out.append(hit_of_memory(m))
        return out

    async def delete(self, ids: Sequence[str] | None) -> int:
        try:
            if ids is None:
                ids = [m.id async for m in self.client.iterate_memories(self.name, 1000)]
            n = 0
            for s in range(0, len(ids), STORE_BATCH):
                n += await self.client.delete_many(self.name, list(ids[s : s + STORE_BATCH]))
            return n
        except NotFound:
            return 0
