"""Helpers of the Kubernetes tests: the rendered objects by kind and name, quantities."""

from __future__ import annotations

import re
from typing import Any


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


SERVER = "lam"  # the base's StatefulSet: the server (the router in the cluster overlay)


def container(objs: list[dict[str, Any]], sts_name: str = SERVER) -> dict[str, Any]:
    sts = one(objs, "StatefulSet", sts_name)
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return c


def selected_statefulsets(objs: list[dict[str, Any]], selector: dict[str, str]) -> list[str]:
    """The StatefulSets whose pods carry every label of `selector`."""
    return [
        sts["metadata"]["name"]
        for sts in by_kind(objs, "StatefulSet")
        if selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    ]


def configmap(objs: list[dict[str, Any]], name: str = "lam-config") -> dict[str, Any]:
    """The ConfigMap generated as `name` (kustomize appends a hash of its content)."""
    (cm,) = [
        o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].rsplit("-", 1)[0] == name
    ]
    return cm


def config(objs: list[dict[str, Any]]) -> dict[str, str]:
    return configmap(objs)["data"]


def effective_env(objs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The plain values a container's process sees: its ConfigMaps (envFrom), then `env`."""
    maps = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(objs, "ConfigMap")}
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        out.update(maps[source["configMapRef"]["name"]])
    out.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return out


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


def quantity(value: str | int) -> int:
    """A Kubernetes memory/storage quantity ("256Mi", "2G", "2000000000") in bytes."""
    m = re.fullmatch(r"(\d+)([kMGT]i?)?", str(value))
    assert m, f"not a quantity: {value!r}"
    return int(m[1]) * _UNITS[m[2] or ""]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def probe_handlers(probe: dict[str, Any]) -> list[str]:
    """A probe's handlers: Kubernetes rejects a probe with more than one (an SMP patch that
    adds `exec` without nulling `httpGet` makes two), and the schema does not say so."""
    return [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in probe]
