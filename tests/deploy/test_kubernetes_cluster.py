"""deploy/overlays/cluster: LAM on a Ray cluster, as docs/cluster.md ("On Kubernetes") says.

test_kubernetes.py renders and validates it with the other overlays (schemas, security,
selectors, the ServiceMonitor); these are the properties a sharded, replicated bank needs
of it: the head at a stable address, a disk per node that follows its pod, nodes spread
over machines, a drain that never takes two nodes, Ray's object store in memory, one
router, no Ray port open outside LAM's pods, and an image that has Ray and the start script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_dockerfile import exec_form, parse, parse_env
from tests.deploy.deploy_k8s import (
    SERVER,
    by_kind,
    config,
    configmap,
    container,
    effective_env,
    env_of,
    one,
    probe_handlers,
    quantity,
    selected_statefulsets,
)

RAY = "lam-ray"  # the LAM nodes' StatefulSet
GiB = 2**30


@pytest.fixture(scope="module")
def objs(rendered: dict) -> list[dict[str, Any]]:
    return rendered["cluster"]


def pod(objs: list[dict[str, Any]], sts: str) -> dict[str, Any]:
    return one(objs, "StatefulSet", sts)["spec"]["template"]["spec"]


def value(c: dict[str, Any], name: str) -> str:
    return env_of(c)[name]["value"]


def field_ref(c: dict[str, Any], name: str) -> str:
    return env_of(c)[name]["valueFrom"]["fieldRef"]["fieldPath"]


def test_the_head_is_ordinal_0_at_the_headless_services_stable_address(objs: list) -> None:
    sts = one(objs, "StatefulSet", RAY)
    cm = configmap(objs)
    host, port = cm["data"]["LAM_RAY_ADDRESS"].rsplit(":", 1)
    # ray-node.sh makes ordinal 0 the head; everyone else reaches it by its per-pod DNS name.
    assert host == f"{RAY}-0.{sts['spec']['serviceName']}"
    headless = one(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Workers and the router resolve the head while it is starting (not ready yet).
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["podManagementPolicy"] == "Parallel"  # the script waits for the head
    c = container(objs, RAY)
    assert c["command"] == ["lam-ray-node", "node"]
    (gcs,) = [p for p in c["ports"] if p["name"] == "gcs"]
    assert gcs["containerPort"] == int(port)
    assert [(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [(int(port), "gcs")]
    # Nodes and router read the one address from the one ConfigMap.
    ref = env_of(c)["LAM_RAY_ADDRESS"]["valueFrom"]["configMapKeyRef"]
    assert ref == {"name": cm["metadata"]["name"], "key": "LAM_RAY_ADDRESS"}
    assert container(objs)["envFrom"][0] == {"configMapRef": {"name": cm["metadata"]["name"]}}
    assert config(objs)["LAM_CLUSTER"] == "ray"
    # The node's resource is lam_node_<pod name> and Ray's address the pod's own.
    assert field_ref(c, "POD_NAME") == "metadata.name"
    assert field_ref(c, "POD_IP") == field_ref(container(objs), "POD_IP") == "status.podIP"


def test_every_node_keeps_its_own_disk_as_its_data_dir(objs: list) -> None:
    sts = one(objs, "StatefulSet", RAY)
    c = container(objs, RAY)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == value(c, "LAM_NODE_DATA_DIR")
    # Deleting or scaling away a pod keeps its replicas' stores for when it comes back.
    for name in (RAY, SERVER):
        policy = one(objs, "StatefulSet", name)["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    # Nodes are replaced by hand, one at a time after the router caught the last one up.
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    # The router's disk holds only the coordinator file.
    (router_claim,) = one(objs, "StatefulSet", SERVER)["spec"]["volumeClaimTemplates"]
    router_bytes = quantity(router_claim["spec"]["resources"]["requests"]["storage"])
    assert router_bytes <= GiB < quantity(claim["spec"]["resources"]["requests"]["storage"])
    assert "LAM_NODE_DATA_DIR" not in env_of(container(objs))


def test_nodes_never_share_a_machine(objs: list) -> None:
    spec = pod(objs, RAY)
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selected_statefulsets(objs, term["labelSelector"]["matchLabels"]) == [RAY]
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert selected_statefulsets(objs, spread["labelSelector"]["matchLabels"]) == [RAY]


def test_a_drain_takes_at_most_one_node(objs: list) -> None:
    # A shard's R replicas are on R different nodes: one node down leaves R - 1 of them.
    budgets = {
        tuple(selected_statefulsets(objs, p["spec"]["selector"]["matchLabels"])): p["spec"]
        for p in by_kind(objs, "PodDisruptionBudget")
    }
    assert budgets[(RAY,)] == {"maxUnavailable": 1, "selector": budgets[(RAY,)]["selector"]}


@pytest.mark.parametrize("sts", [RAY, SERVER])
def test_ray_gets_a_memory_backed_dev_shm_and_no_usage_stats(objs: list, sts: str) -> None:
    from ray._private.ray_constants import OBJECT_STORE_MINIMUM_MEMORY_BYTES

    spec, c = pod(objs, sts), container(objs, sts)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    env = effective_env(objs, c)
    store = int(env["LAM_RAY_OBJECT_STORE_BYTES"])
    assert OBJECT_STORE_MINIMUM_MEMORY_BYTES <= store < quantity(shm["sizeLimit"])
    # A memory volume is charged to the container: the processes need room beyond it.
    limit = quantity(c["resources"]["limits"]["memory"])
    assert limit >= quantity(shm["sizeLimit"]) + GiB
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["HOME"] in mounts  # Ray writes under $HOME; the root is read-only
    # Ray's logs, in /tmp, stay well inside that volume's limit (over it: eviction).
    logs = int(env["RAY_ROTATION_MAX_BYTES"]) * (1 + int(env["RAY_ROTATION_BACKUP_COUNT"]))
    assert logs * 20 <= quantity(volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"])


def test_probes(objs: list) -> None:
    for sts in (RAY, SERVER):
        c = container(objs, sts)
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert len(probe_handlers(c[kind])) == 1, f"{sts} {kind}: {c[kind]}"
    node = container(objs, RAY)
    assert node["readinessProbe"]["exec"]["command"] == ["lam-ray-node", "ready"]
    assert node["livenessProbe"]["exec"]["command"] == ["lam-ray-node", "alive"]
    startup = node["startupProbe"]
    assert startup["exec"]["command"] == ["lam-ray-node", "alive"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # waiting for the head
    # `ray health-check` starts a Python: give it longer than an HTTP probe.
    assert node["readinessProbe"]["timeoutSeconds"] >= 10
    router = container(objs)
    assert router["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert router["livenessProbe"]["exec"]["command"] == ["lam-ray-node", "alive", "/healthz"]


def test_termination_is_graceful(objs: list) -> None:
    c = container(objs, RAY)
    # `ray stop` gets its grace, then the rest of Ray's processes their SIGTERM.
    stop = int(value(c, "LAM_RAY_STOP_GRACE_S"))
    assert pod(objs, RAY)["terminationGracePeriodSeconds"] >= stop + 30
    assert pod(objs, SERVER)["terminationGracePeriodSeconds"] > 30  # the server's drain


def test_one_router_pod_runs_the_images_server(repo: Path, objs: list) -> None:
    # A StatefulSet never runs two pods of one identity (a Deployment's rollout would):
    # two routers would each keep their own replica states and write sequence.
    assert by_kind(objs, "Deployment") == []
    assert one(objs, "StatefulSet", SERVER)["spec"]["replicas"] == 1
    runtime = parse((repo / "docker" / "Dockerfile").read_text()).stages[-1]
    cmd = runtime.last("CMD")
    assert cmd is not None
    assert container(objs)["command"] == ["lam-ray-node", "router", *exec_form(cmd.args)]
    assert one(objs, "StatefulSet", RAY)["spec"]["replicas"] >= 2  # R = 2 needs two nodes


def test_only_lam_pods_reach_ray(objs: list) -> None:
    (policy,) = by_kind(objs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    selected = selected_statefulsets(objs, spec["podSelector"]["matchLabels"])
    assert sorted(selected) == sorted([RAY, SERVER])
    from_pods, http_only = spec["ingress"]
    (peer,) = from_pods["from"]
    assert peer.keys() == {"podSelector"} and "ports" not in from_pods
    assert sorted(selected_statefulsets(objs, peer["podSelector"]["matchLabels"])) == sorted(
        [RAY, SERVER]
    )
    assert "from" not in http_only and http_only["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The named port exists on the router only: a Ray node opens nothing to the outside.
    named = {sts: {p["name"] for p in container(objs, sts)["ports"]} for sts in (RAY, SERVER)}
    assert "http" in named[SERVER] and "http" not in named[RAY]


def test_the_image_has_ray_and_the_start_script(repo: Path, objs: list) -> None:
    images = {container(objs, sts)["image"] for sts in (RAY, SERVER)}
    (image,) = images
    assert image.rsplit(":", 1)[0].endswith("/lam-cluster")
    # The extra the image installs (pyproject.toml) and Ray's pin (constraints.txt).
    assert re.search(r'^cluster = \["ray[<=>]', (repo / "pyproject.toml").read_text(), re.M)
    pins = (repo / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("ray==") for line in pins)
    for name in ("Dockerfile", "Dockerfile.cuda"):
        df = parse((repo / "docker" / name).read_text())
        builder = df.stage("builder")
        assert any(a.args == 'LAM_EXTRAS=""' for a in builder.all("ARG")), name
        runs = [r.args for r in builder.all("RUN")]
        (project_run,) = [r for r in runs if "-c constraints.txt" in r]
        assert '".${LAM_EXTRAS:+[$LAM_EXTRAS]}"' in project_run
        assert "install -m 0755 docker/ray-node.sh /opt/venv/bin/lam-ray-node" in project_run
        env: dict[str, str | None] = {"PATH": "/usr/bin"}
        for ins in df.stages[-1].all("ENV"):
            env.update(parse_env(ins.args, env))
        assert (env["PATH"] or "").startswith("/opt/venv/bin:")  # lam-ray-node is on PATH


def test_docs_name_what_the_overlay_adds(repo: Path, objs: list) -> None:
    text = (repo / "docs" / "cluster.md").read_text()
    k8s = text[text.index("### On Kubernetes") : text.index("## What is guaranteed")]
    for obj in objs:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = name.rsplit("-", 1)[0]  # without kustomize's hash
        if obj["kind"] in ("StatefulSet", "NetworkPolicy") or name.startswith(RAY):
            assert f"{obj['kind']} `{name}`" in k8s
    overlay = yaml.safe_load((repo / "deploy" / "overlays" / "cluster" / "kustomization.yaml")
                             .read_text())  # fmt: skip
    assert "deploy/overlays/cluster" in k8s and overlay["resources"][0] == "../../base"
