"""Result dataclasses of the Engine; `to_dict()` gives API.md's JSON shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .clock import rfc3339
from .config import BankConfig


def _floats(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _vector(x: np.ndarray, arrays: bool) -> Any:
    """A vector for JSON: a list of floats, or (arrays) a float64 numpy array for orjson's
    OPT_SERIALIZE_NUMPY, which writes the same text without a Python float per element
    (float64, not float32: orjson prints float32 in its own shortest form, other digits)."""
    return np.asarray(x, dtype=np.float64).ravel() if arrays else _floats(x)


@dataclass
class BankInfo:
    name: str
    config: BankConfig
    count: int
    memory_bytes: int
    device: str
    created_at: str
    index: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, **self.config.to_dict()}
        out.update(
            embedder=self.config.embedder,  # null for a vector bank (API.md "Banks")
            count=self.count,
            memory_bytes=self.memory_bytes,
            device=self.device,
            device_requested=self.config.device,
            created_at=self.created_at,
            index=self.index,
        )
        return out


@dataclass
class Skipped:
    """A memory an `if_novel` store did not store (API.md, "Novelty-gated store")."""

    index: int  # its position in the request
    id: str  # the id it would have had (content address included)
    energy: float  # E(ξ) when it was judged: finite, at most τ
    nearest: str  # the memory with the largest weight then (may be of the same batch)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "energy": self.energy, "nearest": self.nearest}


@dataclass
class UpsertResult:
    ids: list[str]
    count: int
    skipped: list[Skipped] | None = None  # None: the store was not gated (no "skipped" key)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ids": self.ids, "count": self.count}
        if self.skipped is not None:
            out["skipped"] = [s.to_dict() for s in self.skipped]
        return out


@dataclass
class MemoryRecord:
    id: str
    vector: np.ndarray | None
    payload: dict[str, Any] | None
    text: str | None = None  # a text bank's memory stored as text (API.md "Text memories")
    # strength, strength_now and the times in unix seconds (priors.RowPriors.fields)
    forgetting: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "payload": self.payload}
        if self.vector is not None:
            out["vector"] = _floats(self.vector)
        if self.text is not None:
            out["text"] = self.text
        if self.forgetting is not None:
            f = self.forgetting
            out.update(strength=f["strength"], strength_now=f["strength_now"])
            for key in ("stored_at", "reinforced_at", "expires_at"):
                out[key] = rfc3339(f[key])  # API.md: RFC 3339 text, null when none
        return out


@dataclass
class Match:
    id: str
    weight: float
    score: float
    payload: dict[str, Any] | None = None
    vector: np.ndarray | None = None
    with_payload: bool = True
    text: str | None = None  # set with the payload, for memories stored as text

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "weight": self.weight, "score": self.score}
        if self.with_payload:
            out["payload"] = self.payload
            if self.text is not None:
                out["text"] = self.text
        if self.vector is not None:
            out["vector"] = _vector(self.vector, arrays)
        return out


@dataclass
class QueryResult:
    state: np.ndarray
    steps: int
    converged: bool
    energy: float
    matches: list[Match]
    missed_mass_bound: float | None = None
    prefiltered: bool = False

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": _vector(self.state, arrays),
            "steps": self.steps,
            "converged": self.converged,
            "energy": self.energy,
            "matches": [m.to_dict(arrays=arrays) for m in self.matches],
        }
        if self.missed_mass_bound is not None:
            out["missed_mass_bound"] = self.missed_mass_bound
            out["prefiltered"] = self.prefiltered
        return out


@dataclass
class QueryBatchResult:
    results: list[QueryResult]
    prefiltered: bool

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """API.md's shape; `arrays`: vectors as numpy arrays (for orjson), not lists."""
        return {
            "results": [r.to_dict(arrays=arrays) for r in self.results],
            "prefiltered": self.prefiltered,
        }


@dataclass
class EnergyResult:
    energies: np.ndarray
    gradients: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"energies": _floats(self.energies)}
        if self.gradients is not None:
            out["gradients"] = [_floats(g) for g in self.gradients]
        return out


@dataclass
class DynamicsResult:
    times: list[float]
    energy: list[float]
    state: np.ndarray
    hidden_top: list[dict[str, Any]]
    converged: bool
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "times": [float(t) for t in self.times],
            "energy": [float(e) for e in self.energy],
            "state": _floats(self.state),
            "hidden_top": self.hidden_top,
            "converged": self.converged,
            "steps": self.steps,
        }


@dataclass
class DiagnosticsResult:
    beta: float
    count: int
    max_norm: float
    threshold: float
    n_meeting: int
    n_separable: int
    beta_min: float | None
    failing: list[dict[str, Any]]
    failing_total: int
    method: str
    separation: dict[str, float] = field(default_factory=dict)
    next_offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "count": self.count,
            "M": self.max_norm,
            "threshold": self.threshold,
            "meeting": self.n_meeting,
            "separable": self.n_separable,
            "beta_min": self.beta_min,
            "failing": self.failing,
            "failing_total": self.failing_total,
            "next_offset": self.next_offset,
            "method": self.method,
            "separation": self.separation,
        }
