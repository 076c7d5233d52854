"""`TextBank`: the shared text-bank plans of _textbank.py over a sync `Client` (HTTP or
embedded). `_atextbank.py` is GENERATED from this file (`python -m lam_client._codegen`):
edit this one and regenerate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..client import Client
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


class TextBank(BankBase):
    """The text-bank plans over a `Client` (HTTP or embedded): one call per request."""

    def __init__(self, client: Client, spec: BankSpec) -> None:
        super().__init__(spec)
        self.client = client

    def ensure(self, dim: int | None = None) -> bool:
        """Learn the bank's dim; with `dim`, create the bank if it is missing. False: none."""
        if self.dim is not None:
            return True
        try:
            self.dim = self.client.get_bank(self.name).dim
        except NotFound:
            if dim is None:
                return False
            self.dim = self.client.create_bank(self.name, dim, **self._create_args(dim)).dim
        return True

    def add(self, vectors: Any, ids: list[str], payloads: list[dict[str, Any]]) -> list[str]:
        xi = as_matrix(vectors)  # (n, d)
        if len(ids) == 0:
            return []
        self.ensure(xi.shape[1])
        uids, uxi, upay = dedupe_last(ids, xi, payloads)
        for s in range(0, len(uids), STORE_BATCH):
            e = s + STORE_BATCH
            try:
                self.client.store(self.name, uxi[s:e], ids=uids[s:e], payloads=upay[s:e])
            except NotFound:
                # The bank went away since we learned its dim (deleted by someone else):
                # create it again, once, and store there.
                self.dim = None
                self.ensure(xi.shape[1])
                self.client.store(self.name, uxi[s:e], ids=uids[s:e], payloads=upay[s:e])
        return ids

    def _cue_query(self, vector: Any, top: int, with_vectors: bool) -> QueryResponse:
        if self.steps0 is not False:
            try:
                r = self.client.query(
                    self.name, vector, **self._cue_kwargs(top, with_vectors, True)
                )
                self.steps0 = True
                return r
            except InvalidInput as exc:
                if not is_steps_refusal(exc):
                    raise
                self.steps0 = False
        return self.client.query(self.name, vector, **self._cue_kwargs(top, with_vectors, False))

    def search(
        self,
        vector: Any,
        k: int,
        flt: MetadataFilter | None = None,
        with_vectors: bool = False,
        where: HitFilter | None = None,
    ) -> Recall | None:
        """The k best matches at the cue that pass `flt` (on metadata) and `where` (on the
        whole hit); None when there is nothing to search."""
        if k <= 0 or not self.ensure():
            return None
        plan = search_plan(k, flt, where)
        top = next(plan)
        try:
            while True:
                res = self._cue_query(vector, top, with_vectors)[0]
                top = plan.send(hits_of(res))
        except StopIteration as done:
            # Scored at the cue either way: report it as API.md reports steps 0.
            return Recall(done.value, res.energy, res.state, 0, False)
        except LamClientError as exc:
            if missing(exc):
                return None
            raise

    def complete(self, vector: Any, k: int, steps: int, beta: float | None = None) -> Recall | None:
        """LAM's own retrieval: `steps` Model B updates from the cue, matches at the end."""
        if not self.ensure():
            return None
        try:
            res = self.client.query(self.name, vector, steps=steps, beta=beta, top_k=k)[0]
        except LamClientError as exc:
            if missing(exc):
                return None
            raise
        return Recall(hits_of(res), res.energy, res.state, res.steps, res.converged)

    def energy(self, vector: Any) -> float | None:
        """E at the (normalized, if the bank normalizes) vector; None for no/empty bank."""
        if not self.ensure():
            return None
        v = as_matrix(vector)
        if self.spec.normalize:
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        try:
            return float(self.client.energy(self.name, v).energies[0])
        except LamClientError as exc:
            if missing(exc):
                return None
            raise

    def get_many(self, ids: Sequence[str]) -> list[Hit]:
        out = []
        for i in ids:
            try:
                m = self.client.get(self.name, i)
            except NotFound:
                continue  # missing ids are left out, not an error (LangChain's contract)
            out.append(hit_of_memory(m))
        return out

    def ids_where(self, where: HitFilter) -> list[str]:
        """Ids of the memories whose hit passes `where`: one scroll through the whole bank
        (the server cannot filter yet)."""
        out = []
        try:
            for m in self.client.iterate_memories(self.name, page_size=1000):
                if where(hit_of_memory(m)):
                    out.append(m.id)
        except NotFound:
            return []
        return out

    def delete(self, ids: Sequence[str] | None) -> int:
        """Delete these ids (unknown ones are ignored), or every memory with None."""
        try:
            if ids is None:
                ids = [m.id for m in self.client.iterate_memories(self.name, page_size=1000)]
            n = 0
            for s in range(0, len(ids), STORE_BATCH):
                n += self.client.delete_many(self.name, list(ids[s : s + STORE_BATCH]))
            return n
        except NotFound:
            return 0
