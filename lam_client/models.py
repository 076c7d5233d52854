"""Typed results. Every one is parsed from API.md's JSON shape (`from_dict`), whether the dict
came over HTTP or from the embedded engine's `to_dict()`, so both modes give equal objects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _vec(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _opt_vec(x: Any) -> np.ndarray | None:
    return None if x is None else _vec(x)


@dataclass
class Bank:
    """A bank's description: its config plus count, memory_bytes, device, created_at, index."""

    name: str
    dim: int
    model: str
    beta: float
    normalize: bool
    dtype: str
    device: str
    count: int
    memory_bytes: int
    created_at: str
    prefilter: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    payload_index: dict[str, str] = field(default_factory=dict)  # {key: kind}, API.md Filters
    shards: int = 1  # API.md "Sharded banks"
    replicas: int = 1
    embedder: dict[str, Any] | None = None  # a text bank's {"model": ...}; None: vectors only
    default_ttl_s: float | None = None  # API.md "Forgetting"
    half_life_s: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bank:
        return cls(
            name=d["name"],
            dim=int(d["dim"]),
            model=d.get("model", "B"),
            beta=float(d.get("beta", 1.0)),
            normalize=bool(d.get("normalize", False)),
            dtype=d.get("dtype", "float32"),
            device=d.get("device", "cpu"),
            count=int(d.get("count", 0)),
            memory_bytes=int(d.get("memory_bytes", 0)),
            created_at=str(d.get("created_at", "")),
            prefilter=dict(d.get("prefilter") or {}),
            model_params=dict(d.get("model_params") or {}),
            index=dict(d.get("index") or {}),
            payload_index=dict(d.get("payload_index") or {}),
            shards=int(d.get("shards", 1)),
            replicas=int(d.get("replicas", 1)),
            embedder=d.get("embedder"),
            default_ttl_s=d.get("default_ttl_s"),
            half_life_s=d.get("half_life_s"),
            raw=d,
        )


@dataclass
class Skipped:
    """A memory a store with `if_novel` did not store: its energy was not above τ."""

    index: int  # position in the batch sent
    id: str  # the id it would have had (its content address when none was given)
    energy: float  # E(ξ) when it was judged (no constants)
    nearest: str  # id of the memory with the largest weight at ξ then

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Skipped:
        return cls(
            index=int(d["index"]), id=d["id"], energy=float(d["energy"]), nearest=d["nearest"]
        )


@dataclass
class StoreResult:
    ids: list[str]  # what was stored
    count: int  # bank size after the batch
    skipped: list[Skipped] = field(default_factory=list)  # only ever filled with if_novel

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoreResult:
        skipped = [Skipped.from_dict(s) for s in d.get("skipped") or ()]
        return cls(ids=list(d["ids"]), count=int(d["count"]), skipped=skipped)


@dataclass
class Memory:
    id: str
    vector: np.ndarray | None  # (d,)
    payload: dict[str, Any] | None
    text: str | None = None  # a text bank's memory stored as text
    # API.md "Forgetting": the strength, the one in force now, and RFC 3339 times (or None)
    strength: float = 1.0
    strength_now: float = 1.0
    stored_at: str | None = None
    reinforced_at: str | None = None
    expires_at: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Memory:
        return cls(
            id=d["id"],
            vector=_opt_vec(d.get("vector")),
            payload=d.get("payload"),
            text=d.get("text"),
            strength=float(d.get("strength", 1.0)),
            strength_now=float(d.get("strength_now", 1.0)),
            stored_at=d.get("stored_at"),
            reinforced_at=d.get("reinforced_at"),
            expires_at=d.get("expires_at"),
        )


@dataclass
class ScrollPage:
    memories: list[Memory]
    next_cursor: str | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScrollPage:
        return cls([Memory.from_dict(m) for m in d["memories"]], d.get("next_cursor"))


@dataclass
class Match:
    id: str
    weight: float  # p_μ at the returned state
    score: float  # ξ_μ · v
    payload: dict[str, Any] | None = None
    vector: np.ndarray | None = None
    text: str | None = None  # with the payload, for a memory stored as text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Match:
        return cls(
            id=d["id"],
            weight=float(d["weight"]),
            score=float(d["score"]),
            payload=d.get("payload"),
            vector=_opt_vec(d.get("vector")),
            text=d.get("text"),
        )


@dataclass
class QueryResult:
    state: np.ndarray  # (d,) the retrieved, completed vector
    steps: int
    converged: bool
    energy: float
    matches: list[Match]
    missed_mass_bound: float | None = None
    prefiltered: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueryResult:
        bound = d.get("missed_mass_bound")
        return cls(
            state=_vec(d["state"]),
            steps=int(d["steps"]),
            converged=bool(d["converged"]),
            energy=float(d["energy"]),
            matches=[Match.from_dict(m) for m in d.get("matches", [])],
            missed_mass_bound=None if bound is None else float(bound),
            prefiltered=bool(d.get("prefiltered") or False),
        )


@dataclass
class QueryResponse:
    """One QueryResult per query row; `states` stacks them as a (B, d) array."""

    results: list[QueryResult]
    prefiltered: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QueryResponse:
        return cls([QueryResult.from_dict(r) for r in d["results"]], bool(d.get("prefiltered")))

    @property
    def states(self) -> np.ndarray:
        return np.stack([r.state for r in self.results])  # (B, d)

    @property
    def energies(self) -> np.ndarray:
        return np.asarray([r.energy for r in self.results], dtype=np.float64)  # (B,)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> QueryResult:
        return self.results[i]

    def __iter__(self) -> Iterator[QueryResult]:
        return iter(self.results)


@dataclass
class EnergyResult:
    energies: np.ndarray  # (B,)
    gradients: np.ndarray | None = None  # (B, d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnergyResult:
        grads = d.get("gradients")
        return cls(
            energies=np.asarray(d["energies"], dtype=np.float64),
            gradients=None if grads is None else _vec(grads),
        )


@dataclass
class HiddenUnit:
    id: str
    value: float  # f_μ at the end of the trajectory


@dataclass
class DynamicsResult:
    times: np.ndarray  # (T,)
    energy: np.ndarray  # (T,) full two-layer energy, non-increasing
    state: np.ndarray  # (d,) v at the end
    hidden_top: list[HiddenUnit]
    converged: bool
    steps: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DynamicsResult:
        steps = d.get("steps")
        return cls(
            times=np.asarray(d["times"], dtype=np.float64),
            energy=np.asarray(d["energy"], dtype=np.float64),
            state=_vec(d["state"]),
            hidden_top=[HiddenUnit(h["id"], float(h["value"])) for h in d.get("hidden_top", [])],
            converged=bool(d["converged"]),
            steps=None if steps is None else int(steps),
        )


@dataclass
class Diagnostics:
    """Separation report of /diagnostics (Ramsauer et al. fixed-point condition at `beta`)."""

    beta: float
    count: int
    M: float | None
    threshold: float | None
    meeting: int
    separable: int
    beta_min: float | None
    failing: list[dict[str, Any]]
    failing_total: int
    next_offset: int | None
    method: str
    separation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostics:
        return cls(
            beta=float(d["beta"]),
            count=int(d["count"]),
            M=d.get("M"),
            threshold=d.get("threshold"),
            meeting=int(d["meeting"]),
            separable=int(d["separable"]),
            beta_min=d.get("beta_min"),
            failing=list(d.get("failing") or []),
            failing_total=int(d.get("failing_total", 0)),
            next_offset=d.get("next_offset"),
            method=str(d.get("method", "")),
            separation=dict(d.get("separation") or {}),
        )


__all__ = [
    "Bank",
    "Diagnostics",
    "DynamicsResult",
    "EnergyResult",
    "HiddenUnit",
    "Match",
    "Memory",
    "QueryResponse",
    "QueryResult",
    "ScrollPage",
    "Skipped",
    "StoreResult",
]
