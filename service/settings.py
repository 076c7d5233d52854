"""Service settings from the environment (prefix LAM_). Built per app: no module-level global."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lam_engine.config import DYNAMICS, MAX_DIM, QUERY


class Settings(BaseSettings):
    """Every knob of the HTTP service; `LAM_<NAME>` in the environment overrides the default."""

    model_config = SettingsConfigDict(env_prefix="LAM_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path("./data")
    # "key1:write,key2:read"; unset or empty = no auth. Parsed by service.auth.KeyTable.
    api_keys: str | None = Field(default=None, repr=False)
    device: str = "auto"
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    metrics_auth: bool = False

    max_body_bytes: int = Field(default=64 << 20, ge=1)
    # Snapshot uploads carry whole banks, so they get their own, larger limit.
    max_snapshot_bytes: int = Field(default=16 << 30, ge=1)
    max_store_batch: int = Field(default=10_000, ge=1)
    max_query_batch: int = Field(default=1024, ge=1)
    max_dim: int = Field(default=MAX_DIM, ge=1, le=MAX_DIM)
    max_banks: int = Field(default=1000, ge=1)
    max_dynamics_steps: int = Field(default=DYNAMICS.steps_max, ge=1)
    # Above QUERY.steps_max the engine refuses anyway: in effect this can only lower it.
    max_query_steps: int = Field(default=QUERY.steps_max, ge=1)

    # Per client (API key, or address without auth) on /v1 routes, in the `limits` notation:
    # "100/second", "1000/minute;50/second" (all must hold). Unset = no limit. See ratelimit.py.
    rate_limit: str | None = None

    batch_window_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    batch_max: int = Field(default=64, ge=1)
    # Query requests waiting or computing at once; beyond it 503 overloaded (API.md's 503).
    # 512 × a 1 MiB JSON body at most is the memory this queue may hold.
    max_pending_queries: int = Field(default=512, ge=1)

    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    torch_threads: int = Field(default=0, ge=0)
    worker_threads: int = Field(default=8, ge=1, le=256)
    chunk_bytes: int = Field(default=64 << 20, ge=1 << 16)
    shutdown_timeout_s: int = Field(default=30, ge=0)

    # Cluster mode (API.md "Sharded banks (cluster mode)"): "ray" makes this process a router
    # over the Ray cluster at `ray_address` ("auto": the local one; lam_cluster/backend.py).
    # Ray is an optional extra, imported only then.
    cluster: Literal["off", "ray"] = "off"
    ray_address: str = "auto"

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        from limits import parse_many

        try:
            parse_many(v)
        except ValueError as exc:
            raise ValueError(f"LAM_RATE_LIMIT: {exc} (e.g. '100/second;2000/minute')") from exc
        return v

    @field_validator("log_level", "cluster", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @property
    def batching_enabled(self) -> bool:
        return self.batch_window_ms > 0
