"""The `Shard` protocol of lam_engine/shards over Ray, and the bank view the router hands to
lam_engine/shards/ops.py — so query and energy on a cluster bank run the in-process sharded
bank's own code (dense and prefiltered passes, filters, masks, multi-step rounds, the merged
certificate), and only the passes themselves run on the shards' replicas.

`RemoteShard.dense` / `.candidates` submit the call and return a `_Pending` answer that
waits for it when the merge reads it: ops.py builds the list of every shard's answer before
it merges, so the K calls of a round run at once (one call per shard per batch per step).

Top-k entries carry *codes* as their global keys: (shard << KEY_BITS) | the replica's own
key. Each answer brings the ids and payloads of its top-k, so the view maps a code to its
memory from the very answer that produced it (a failover between replicas, whose own keys
may differ, cannot mix them up). The answer brings their log-priors too (the bias the
replica's pass added, aligned to the router's reference time: lam_cluster/forgetting.py),
so the union of the shards' top-k is ranked by weight as one bank ranks it, and their texts.

A view is one request at one time: every call it makes carries the router's (now, t_ref)
read when the view was made, so every round of a multi-step query sees the same memories.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lam_engine.config import BankConfig
from lam_engine.errors import LamError
from lam_engine.math.merge import Partials
from lam_engine.results import QueryBatchResult
from lam_engine.shards import ShardPartials

from .timing import Timing

KEY_BITS = 40  # a replica's keys are its store's seq: far below 2**40


class ClusterView:
    """A cluster bank as lam_engine/shards/ops.py sees a `ShardedBank` (one per request)."""

    def __init__(self, bank: Any) -> None:  # a router.ClusterBank (which imports this module)
        self.bank = bank
        self.config: BankConfig = bank.config
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.ctx = bank.ctx()  # this request's (now, t_ref)
        self._known: dict[int, tuple[int, str, Any]] = {}  # code → (shard, id, payload)
        self._log_prior: dict[int, float] = {}  # code → its log-prior (float32 bias)
        self._texts: dict[str, str] = {}  # id → text, of the matches stored as text
        self._rows: list[tuple[int, str, Any]] = []
        self._vectors: dict[str, np.ndarray] = {}
        self._restricted: tuple[Any, list[Any]] | None = None

    def shards(self, chunk_bytes: int) -> list[RemoteShard]:
        return [RemoteShard(self, s) for s in range(self.config.shards)]

    def restriction(self, s: int, flt: Any) -> tuple[int, float, bool, float]:
        """(count, max ‖ξ‖, has index, log Σ s_μ) of shard s under `flt`: all shards asked
        at once."""
        if self._restricted is None or self._restricted[0] is not flt:
            self._restricted = (flt, self.bank.read_all("restricted", flt, ctx=self.ctx))
        count, norm, index, mass, _ = self._restricted[1][s]
        return int(count), float(norm), bool(index), float(mass)

    def learn(self, s: int, answer: dict[str, Any]) -> np.ndarray:
        """The codes of an answer's top-k (−1: none), remembering their memories."""
        keys = np.asarray(answer["keys"], dtype=np.int64)
        codes = np.where(keys >= 0, (s << KEY_BITS) | np.maximum(keys, 0), -1)
        for i, row in enumerate(codes):
            for j, code in enumerate(row):
                if code >= 0:
                    mid = answer["ids"][i][j]
                    self._known[int(code)] = (s, mid, answer["payloads"][i][j])
                    self._log_prior[int(code)] = float(answer["log_priors"][i][j])
                    text = answer["texts"][i][j] if answer["texts"] is not None else None
                    if text is not None:
                        self._texts[mid] = text
        return codes

    def attach_texts(self, result: QueryBatchResult) -> QueryBatchResult:
        """Matches that carry their payload carry their text (texts.attach_texts)."""
        for r in result.results:
            for m in r.matches:
                if m.with_payload:
                    m.text = self._texts.get(m.id)
        return result

    # ---- what ops.py reads of a bank -------------------------------------------------------
    @property
    def count(self) -> int:
        return self.bank.count()

    @property
    def has_prior(self) -> bool:
        """Strengths other than 1 on some shard, or a half-life (as `ShardedBank`'s)."""
        if self.config.half_life_s is not None:
            return True
        if self._restricted is None:
            self._restricted = (None, self.bank.read_all("restricted", None, ctx=self.ctx))
        return any(bool(r[4]) for r in self._restricted[1])

    @property
    def bias(self) -> torch.Tensor | None:
        """None when no shard has a prior (the merge ranks by score alone). Otherwise only
        its presence is read (shards/ops.key_bias): the values come per key, from the
        answers (`key_log_prior`), as the view holds no row of its own."""
        return torch.zeros(0) if self.has_prior else None

    def key_log_prior(self, keys: torch.Tensor) -> torch.Tensor:
        """The log-prior of codes (B, k), 0 for −1 (`ShardedBank.key_log_prior`)."""
        lp = self._log_prior
        out = [[lp.get(int(c), 0.0) if c >= 0 else 0.0 for c in row] for row in keys.tolist()]
        return torch.tensor(out, dtype=torch.float32).reshape(keys.shape)

    def bias_offset(self) -> float:
        """The log-priors' common part at this request's time, in E only."""
        return Timing.offset(self.ctx, self.config.half_life_s)

    def rows_for_keys(self, keys: np.ndarray) -> np.ndarray:
        out = np.full(np.shape(keys), -1, dtype=np.int64)
        for idx, code in np.ndenumerate(keys):
            if code >= 0 and int(code) in self._known:
                out[idx] = len(self._rows)
                self._rows.append(self._known[int(code)])
        return out

    def id_at(self, row: int) -> str:
        return self._rows[row][1]

    def payload_at(self, row: int) -> Any:
        return self._rows[row][2]

    def vector_at(self, row: int) -> np.ndarray:
        """The memory's stored vector: every match's fetched at once, one call per shard."""
        mid = self._rows[row][1]
        if mid not in self._vectors:
            by_shard: dict[int, list[str]] = {}
            for s, i, _ in self._rows:
                if i not in self._vectors:
                    by_shard.setdefault(s, []).append(i)
            for s, ids in by_shard.items():
                ids = list(dict.fromkeys(ids))
                vecs = self.bank.shard_call(s, "vectors", ids, ctx=self.ctx)
                for i, vec in zip(ids, vecs, strict=True):
                    self._vectors[i] = np.asarray(vec)
        return self._vectors[mid]


class RemoteShard:
    """One shard of a cluster bank behind the `Shard` protocol (lam_engine/shards)."""

    def __init__(
        self,
        view: ClusterView,
        s: int,
        flt: Any = None,
        info: tuple[int, float, bool, float] | None = None,
    ) -> None:
        self.view, self.s, self.flt = view, s, flt
        self._info = info

    def _get_info(self) -> tuple[int, float, bool, float]:
        if self._info is None:
            self._info = self.view.restriction(self.s, self.flt)
        return self._info

    def restricted(self, flt: Any) -> RemoteShard | None:
        info = self.view.restriction(self.s, flt)
        return RemoteShard(self.view, self.s, flt, info) if info[0] else None

    @property
    def count(self) -> int:
        return int(self._get_info()[0])

    def max_norm(self) -> float:
        return float(self._get_info()[1])

    def log_mass(self) -> float:
        return float(self._get_info()[3])

    @property
    def has_index(self) -> bool:
        return bool(self._get_info()[2])

    def _states(self, states: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(states.float().cpu().numpy())

    def dense(
        self, states: torch.Tensor, beta: float, *, top_k: int, need_out: bool
    ) -> ShardPartials:
        args = (self._states(states), float(beta), int(top_k), bool(need_out), self.flt)
        return _Pending(self, "dense", args)  # type: ignore[return-value]

    def candidates(
        self, states: torch.Tensor, beta: float, *, k_candidates: int, top_k: int,
        need_out: bool = True,
    ) -> ShardPartials:  # fmt: skip
        args = (
            self._states(states), float(beta), int(k_candidates), int(top_k), self.flt,
            bool(need_out),
        )  # fmt: skip
        return _Pending(self, "candidates", args)  # type: ignore[return-value]


class _Pending:
    """A shard's answer in flight; reading `parts` or `log_tail` waits for it (a replica that
    fails is marked dead and the shard asked again on another)."""

    def __init__(self, shard: RemoteShard, method: str, args: tuple[Any, ...]) -> None:
        self.shard, self.method, self.args = shard, method, args
        bank = shard.view.bank
        self._call = bank.submit(bank.reader(shard.s), method, *args, ctx=shard.view.ctx)
        self._done: ShardPartials | None = None

    def _resolve(self) -> ShardPartials:
        if self._done is not None:
            return self._done
        view, s = self.shard.view, self.shard.s
        bank = view.bank
        try:
            answer = bank.wait(self._call)
        except LamError:
            raise
        except Exception:
            bank.dead(self._call.rep)
            answer = bank.shard_call(s, self.method, *self.args, ctx=view.ctx)
        states = self.args[0]
        if answer is None:  # emptied since it was counted: it adds nothing
            b, d = states.shape
            # need_out: dense's args[3], candidates' args[5] (the calls' argument order).
            want_v = bool(self.args[5] if self.method == "candidates" else self.args[3])
            parts = Partials.empty(b, d if want_v else 0, 0, device=torch.device("cpu"))
            self._done = ShardPartials(
                parts, None if self.method == "dense" else np.full(b, -math.inf)
            )
            return self._done
        codes = view.learn(s, answer)
        parts = Partials(
            m=torch.from_numpy(np.array(answer["m"])),
            s=torch.from_numpy(np.array(answer["s"])),
            v=torch.from_numpy(np.array(answer["v"])),
            top_scores=torch.from_numpy(np.array(answer["top_scores"])),
            top_rows=torch.from_numpy(codes),
        )
        tail = answer["log_tail"]
        self._done = ShardPartials(parts, None if tail is None else np.asarray(tail))
        return self._done

    @property
    def parts(self) -> Partials:
        return self._resolve().parts

    @property
    def log_tail(self) -> np.ndarray | None:
        return self._resolve().log_tail
