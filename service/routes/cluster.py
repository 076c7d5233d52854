"""GET /v1/cluster: nodes, and every bank's shards and their replicas (API.md "Sharded banks").

Outside cluster mode there is one node, this process, and every shard of every bank has one
replica there, `active` (the in-process shards of lam_engine/shards). In cluster mode
(LAM_CLUSTER=ray) the Ray cluster's LAM nodes and the replicas' states, from the router
(lam_cluster/backend.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from ..bank_schemas import ClusterOut
from ..deps import READ, RtDep, engine_of
from ..responses import OrjsonResponse

router = APIRouter(prefix="/v1", tags=["cluster"])
LOCAL_NODE = "local"


@router.get("/cluster", response_model=ClusterOut, dependencies=READ)
async def cluster(rt: RtDep) -> Response:
    if rt.settings.cluster == "ray":
        engine: Any = engine_of(rt)  # a lam_cluster ClusterEngine (deps.Runtime._open)
        return OrjsonResponse(await rt.run(engine.cluster_info))
    infos = await rt.run(engine_of(rt).list_banks)
    address = f"{rt.settings.host}:{rt.settings.port}"
    body: dict[str, Any] = {
        "nodes": [{"node_id": LOCAL_NODE, "address": address, "alive": True}],
        "banks": [
            {
                "name": info.name,
                "shards": [
                    {"shard": s, "replicas": [{"node_id": LOCAL_NODE, "state": "active"}]}
                    for s in range(info.config.shards)
                ],
            }
            for info in infos
        ],
    }
    return OrjsonResponse(body)
