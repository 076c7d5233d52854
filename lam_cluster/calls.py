"""Ray, imported on use, the one way the router waits for a replica's answer, and the error
of a shard that no replica answers for."""

from __future__ import annotations

from typing import Any

from lam_engine.errors import InvalidParameterError, LamError


def ray_module() -> Any:
    """Ray (an optional extra: `import lam_cluster` needs no cluster)."""
    import ray

    return ray


def get(ref: Any, timeout: float) -> Any:
    """ray.get; an engine error raised inside the replica (a bad filter, an unknown id) is
    the caller's fault, not the replica's: it is raised again as itself."""
    ray = ray_module()
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LamError):
            raise cause from None
        raise


class ShardUnavailableError(LamError):
    """Every replica of a shard is dead or catching up: 503 with Retry-After (API.md's
    "503 not ready"), which clients retry; the replicas come back when their node does."""

    code = "shard_unavailable"
    status = 503
    retry_after_s = 1

    @classmethod
    def of(cls, bank: str, shard: int, what: str = "no live replica") -> ShardUnavailableError:
        return cls(f"shard {shard} of bank {bank!r}: {what}", {"bank": bank, "shard": shard})


def unsupported(what: str) -> InvalidParameterError:
    """422 for what a cluster bank does not do yet (docs/cluster.md, "Refused")."""
    return InvalidParameterError(
        f"{what} is not supported on cluster banks yet (LAM_CLUSTER=ray)", {"cluster": "ray"}
    )
