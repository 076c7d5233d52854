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
may differ, cannot mix them up).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lam_engine.config import BankConfig
from lam_engine.errors import LamError
from lam_engine.math.merge import Partials
from lam_engine.shards import ShardPartials

KEY_BITS = 40  # a replica's keys are its store's seq: far below 2**40


class ClusterView:
    """A cluster bank as lam_engine/shards/ops.py sees a `ShardedBank` (one per request)."""

    def __init__(self, bank: Any) -> None:  # a router.ClusterBank (which imports this module)
        self.bank = bank
        self.config: BankConfig = bank.config
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._known: dict[int, tuple[int, str, Any]] = {}  # code → (shard, id, payload)
        self._rows: list[tuple[int, str, Any]] = []
        self._vectors: dict[str, np.ndarray] = {}
        self._restricted: tuple[Any, list[Any]] | None = None

    def shards(self, chunk_bytes: int) -> list[RemoteShard]:
        return [RemoteShard(self, s) for s in range(self.config.shards)]

    def restriction(self, s: int, flt: Any) -> tuple[int, float, bool]:
        """(count, max ‖ξ‖, has index) of shard s under `flt`: all shards asked at once."""
        if self._restricted is None or self._restricted[0] is not flt:
            self._restricted = (flt, self.bank.read_all("restricted", flt))
        count, norm, index = self._restricted[1][s]
        return int(count), float(norm), bool(index)

    def learn(self, s: int, answer: dict[str, Any]) -> np.ndarray:
        """The codes of an answer's top-k (−1: none), remembering their memories."""
        keys = np.asarray(answer["keys"], dtype=np.int64)
        codes = np.where(keys >= 0, (s << KEY_BITS) | np.maximum(keys, 0), -1)
        for i, row in enumerate(codes):
            for j, code in enumerate(row):
                if code >= 0:
                    self._known[int(code)] = (s, answer["ids"][i][j], answer["payloads"][i][j])
        return codes

    # ---- what ops.py reads of a bank -------------------------------------------------------
    @property
    def count(self) -> int:
        return self.bank.count()

    # Cluster banks keep no strengths or lifetimes (refused at create and store, see
    # backend.py): no log-priors, so the merge ranks by score alone and E has no offset.
    bias: torch.Tensor | None = None
    has_prior = False

    def bias_offset(self) -> float:
        return 0.0

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
                for i, vec in zip(ids, self.bank.shard_call(s, "vectors", ids), strict=True):
                    self._vectors[i] = np.asarray(vec)
        return self._vectors[mid]


class RemoteShard:
    """One shard of a cluster bank behind the `Shard` protocol (lam_engine/shards)."""

    def __init__(
        self,
        view: ClusterView,
        s: int,
        flt: Any = None,
        info: tuple[int, float, bool] | None = None,
    ) -> None:
        self.view, self.s, self.flt = view, s, flt
        self._info = info

    def _get_info(self) -> tuple[int, float, bool]:
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
        self, states: torch.Tensor, beta: float, *, k_candidates: int, top_k: int
    ) -> ShardPartials:
        args = (self._states(states), float(beta), int(k_candidates), int(top_k), self.flt)
        return _Pending(self, "candidates", args)  # type: ignore[return-value]


class _Pending:
    """A shard's answer in flight; reading `parts` or `log_tail` waits for it (a replica that
    fails is marked dead and the shard asked again on another)."""

    def __init__(self, shard: RemoteShard, method: str, args: tuple[Any, ...]) -> None:
        self.shard, self.method, self.args = shard, method, args
        bank = shard.view.bank
        self._call = bank.submit(bank.reader(shard.s), method, *args)
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
            answer = bank.shard_call(s, self.method, *self.args)
        states = self.args[0]
        if answer is None:  # emptied since it was counted: it adds nothing
            b, d = states.shape
            want_v = self.method == "candidates" or bool(self.args[3])
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
