"""A LAM bank seen as a store of texts: what the LangChain, LlamaIndex and MCP adapters share.

Every memory's payload is `{"page_content": text, "metadata": {...}}`. Searching means
*scoring at the cue*: the matches' `score` is ξ·v for the query vector v itself (the cosine
similarity when the bank normalizes) and `weight` is softmax(β Ξ v) at that same v — the
semantics of a vector store. API.md offers that as `steps: 0`; a server that predates it
answers 422 for steps 0, and then the same numbers come from one step with every feature
marked known (`mask` all true): the known features are clamped back to the cue after the
step, so the returned state is the cue and the matches are scored there (same values, one
extra pass over Ξ). The first query finds out which form the server takes.

Metadata filters are applied here, client-side, because the server's filter language is not
there yet: a filtered search fetches more candidates than asked (4k, then 16k, … up to the
whole bank) until k pass. It is exact (nothing that passes is missed) but costs more than a
server-side filter on a selective filter over a large bank. The softmax weights and the
energy are those of the whole bank, not of the filtered subset.

The I/O lives elsewhere: the sync `TextBank` in _sync_textbank.py, and the async
`AsyncTextBank` in _atextbank.py, GENERATED from it (`python -m lam_client._codegen`), so the
two run the same plans and only the I/O differs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import Conflict, LamClientError, NotFound
from ..models import Memory, QueryResult

# What a filter may be: equality on metadata keys, or any predicate on the metadata dict.
MetadataFilter = Mapping[str, Any] | Callable[[dict[str, Any]], bool]
MAX_TOP_K = 100_000  # the server's top_k limit (API.md query)
STORE_BATCH = 1000
DEFAULT_BETA = 20.0  # cosines lie in [-1, 1]: β = 20 makes a 0.1 lead a factor e² in weight


@dataclass
class Hit:
    """One match of a search, scored at the cue."""

    id: str
    text: str
    metadata: dict[str, Any]
    score: float  # ξ·v at the cue (cosine similarity when the bank normalizes)
    weight: float  # softmax(β Ξ v)_μ at the cue (or at the returned state when steps ≥ 1)
    vector: np.ndarray | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Recall:
    """A search's hits plus LAM's extras for the query: energy (novelty) and the state."""

    hits: list[Hit]
    energy: float  # E at the cue (or at the completed state): high = unfamiliar
    state: np.ndarray  # (d,) the cue as scored, or the completed state when steps ≥ 1
    steps: int = 0
    converged: bool = False


@dataclass
class BankSpec:
    """The bank the adapters create on first write (when it does not exist yet)."""

    name: str
    beta: float = DEFAULT_BETA
    normalize: bool = True
    config: dict[str, Any] = field(default_factory=dict)  # any other create_bank option


def to_payload(text: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"page_content": text, "metadata": dict(metadata or {})}


def from_payload(payload: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(text, metadata); a memory stored by another writer keeps its payload as metadata."""
    p = dict(payload or {})
    if "page_content" in p:
        return str(p["page_content"]), dict(p.get("metadata") or {})
    return "", p


def passes(metadata: Mapping[str, Any], flt: MetadataFilter | None) -> bool:
    """Equality on every key of a dict filter (a list value in the metadata passes when it
    holds the wanted value), or a predicate's verdict."""
    if flt is None:
        return True
    if callable(flt):
        return bool(flt(dict(metadata)))
    for key, want in flt.items():
        have = metadata.get(key)
        if isinstance(have, list) and not isinstance(want, list):
            if want not in have:
                return False
        elif have != want:
            return False
    return True


def hits_of(result: QueryResult) -> list[Hit]:
    out = []
    for m in result.matches:
        text, metadata = from_payload(m.payload)
        out.append(Hit(m.id, text, metadata, m.score, m.weight, m.vector, dict(m.payload or {})))
    return out


HitFilter = Callable[[Hit], bool]


def hit_of_memory(m: Memory) -> Hit:
    text, metadata = from_payload(m.payload)
    return Hit(m.id, text, metadata, 0.0, 0.0, m.vector, dict(m.payload or {}))


def search_plan(
    k: int, flt: MetadataFilter | None, where: HitFilter | None = None
) -> Generator[int, list[Hit], list[Hit]]:
    """Yields the top_k to ask for, receives that answer's hits, returns the k that pass.

    Without a filter that is one request of k. With one, the candidate pool grows 4× until
    k pass or the answer holds fewer than asked (the whole bank has been seen)."""
    filtered = flt is not None or where is not None
    top = min(max(4 * k, k + 16), MAX_TOP_K) if filtered else k
    while True:
        hits = yield top
        kept = [h for h in hits if passes(h.metadata, flt) and (where is None or where(h))]
        if len(kept) >= k or len(hits) < top or top >= MAX_TOP_K:
            return kept[:k]
        top = min(4 * top, MAX_TOP_K)


def new_ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """The caller's ids where given, a fresh uuid4 where not."""
    import uuid

    if ids is not None and len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for {n} texts")
    given = list(ids) if ids is not None else [None] * n
    return [i if i else str(uuid.uuid4()) for i in given]


def dedupe_last(
    ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """The same id twice in one batch is a 422 on the server; keep the last, as an upsert
    of the two in order would."""
    last = {i: j for j, i in enumerate(ids)}
    if len(last) == len(ids):
        return ids, vectors, payloads
    keep = sorted(last.values())
    return [ids[j] for j in keep], vectors[keep], [payloads[j] for j in keep]


def as_matrix(vectors: Any) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.float32)
    return m.reshape(1, -1) if m.ndim == 1 else m  # (n, d)


def is_steps_refusal(exc: LamClientError) -> bool:
    """A 422 that refuses `steps: 0` (a server from before API.md's scoring at the cue)."""
    return exc.status == 422 and "steps" in f"{exc.message} {exc.details!r}"


def missing(exc: LamClientError) -> bool:
    """An answer that means 'nothing to find': no bank yet (404) or an empty one (409)."""
    return isinstance(exc, NotFound) or (isinstance(exc, Conflict) and exc.code == "empty_bank")


class BankBase:
    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self.dim: int | None = None
        # None until the first search says whether the server takes steps 0.
        self.steps0: bool | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def _create_args(self, dim: int) -> dict[str, Any]:
        return {"beta": self.spec.beta, "normalize": self.spec.normalize, **self.spec.config}

    def _cue_kwargs(self, top: int, with_vectors: bool, zero: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"top_k": top, "with_vectors": with_vectors}
        if zero:
            kw["steps"] = 0
        else:
            assert self.dim is not None
            kw["steps"] = 1
            kw["mask"] = np.ones(self.dim, dtype=bool)  # one row for every query
        return kw
