"""Ray, imported on use, and the one way the router waits for a replica's answer."""

from __future__ import annotations

from typing import Any

from lam_engine.errors import LamError


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
