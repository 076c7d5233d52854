"""A stand-in for the few Ray calls lam_cluster makes, running the replica actors in this
process: the router logic (lam_cluster/router.py, shard.py, backend.py) and the service's
cluster mode are tested in the default run without a cluster. The real thing is tested by
the slow tests of tests/cluster.

Each "node" is a directory; an actor pinned by `lam_node_<name>` gets its node's directory
as its data directory, as `lam cluster up` gives LAM_NODE_DATA_DIR. A call's exception is
raised by `get`, as Ray raises a task's (an engine error is then re-raised as itself by
lam_cluster.calls.get, exactly the path a real RayTaskError's cause takes). `kill_node`
makes a node's actors fail every call until `revive_node`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch


class RayTaskError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Exceptions:
    RayTaskError = RayTaskError


class _Ref:
    def __init__(self, fn: Any, args: tuple[Any, ...], alive: bool) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        if not alive:
            self.error = ConnectionError("node lost")
            return
        try:
            self.value = fn(*args)
        except Exception as exc:  # what Ray hands the caller: the task's error, wrapped
            self.error = RayTaskError(exc)


class _Method:
    def __init__(self, actor: _Actor, name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self, *args: Any) -> _Ref:
        return _Ref(getattr(self.actor.obj, self.name), args, self.actor.alive())


class _Actor:
    def __init__(self, ray: FakeRay, node: str, obj: Any) -> None:
        self.ray, self.node, self.obj = ray, node, obj

    def alive(self) -> bool:
        return self.node not in self.ray.dead_nodes

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


class _ActorClass:
    def __init__(self, ray: FakeRay, cls: type) -> None:
        self.ray, self.cls, self.opts = ray, cls, {}

    def options(self, **opts: Any) -> _ActorClass:
        out = _ActorClass(self.ray, self.cls)
        out.opts = opts
        return out

    def remote(self, *args: Any) -> _Actor:
        (res,) = self.opts["resources"]
        node = res[len("lam_node_") :]
        name = self.opts["name"]
        if name in self.ray.actors:  # get_if_exists: the named actor, as it is
            return self.ray.actors[name]
        base = str(self.ray.root / node)
        assert "base" in inspect.signature(self.cls).parameters
        threads = torch.get_num_threads()  # a replica sets its process's: not this one's
        try:
            actor = _Actor(self.ray, node, self.cls(*args, base=base))
        finally:
            torch.set_num_threads(threads)
        self.ray.actors[name] = actor
        return actor


class FakeRay:
    """The `ray` module as lam_cluster uses it (calls.ray_module)."""

    exceptions = _Exceptions

    def __init__(self, root: Path, nodes: list[str]) -> None:
        self.root, self.node_names = root, nodes
        self.actors: dict[str, _Actor] = {}
        self.dead_nodes: set[str] = set()

    def is_initialized(self) -> bool:
        return True

    def remote(self, cls: type) -> _ActorClass:
        return _ActorClass(self, cls)

    def get(self, ref: _Ref | list[_Ref], timeout: float | None = None) -> Any:
        if isinstance(ref, list):
            return [self.get(r) for r in ref]
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor: _Actor, no_restart: bool = True) -> None:
        self.actors = {k: a for k, a in self.actors.items() if a is not actor}

    def nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "Alive": name not in self.dead_nodes,
                "NodeManagerAddress": f"127.0.0.{2 + i}",
                "NodeManagerPort": 7000 + i,
                "Resources": {f"lam_node_{name}": 1.0, "CPU": 1.0},
            }
            for i, name in enumerate(self.node_names)
        ]

    def restart_actors(self) -> None:
        """Every actor's process ends (its store closed); the next `get_if_exists` makes a
        new one, whose constructor reloads the store, as Ray's restart does."""
        for actor in self.actors.values():
            actor.obj.engine.close()
        self.actors.clear()

    def kill_node(self, name: str) -> None:
        self.dead_nodes.add(name)

    def revive_node(self, name: str) -> None:
        self.dead_nodes.discard(name)
