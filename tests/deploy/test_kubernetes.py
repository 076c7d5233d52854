"""The kustomize overlays render, validate against Kubernetes' schemas and wire up correctly.

Built-in kinds are validated (strict: unknown fields rejected) by kubernetes-validate
against the API schema of each version in K8S_VERSIONS. The two Prometheus Operator
kinds (ServiceMonitor, PrometheusRule) are not in those schemas; they are validated
against their CRD's schema as generated into cloudcoil's models, and a round trip
through the model must give the object back unchanged (so no field is unknown).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_k8s import (
    SERVER,
    by_kind,
    config,
    configmap,
    container,
    one,
    selected_statefulsets,
)
from tests.deploy.deploy_support import OVERLAYS

try:
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError:  # pragma: no cover - the failure is the message
    kubernetes_validate = None

try:
    from cloudcoil.models.prometheus_operator import v1 as prom_v1
except ImportError:  # pragma: no cover
    prom_v1 = None

CRD_KINDS = ("ServiceMonitor", "PrometheusRule")
OLDEST_K8S = "1.31.0"  # the oldest minor still in the major clouds' standard support


def k8s_versions() -> list[str]:
    if kubernetes_validate is None:
        return [OLDEST_K8S]
    return [OLDEST_K8S, kv_utils.latest_version()]


def need(module: Any, pip_name: str) -> Any:
    if module is None:
        pytest.fail(f"python package {pip_name} missing: bash scripts/install-test-tools.sh")
    return module


@pytest.mark.parametrize("version", k8s_versions())
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_validate(rendered: dict, overlay: str, version: str) -> None:
    kv = need(kubernetes_validate, "kubernetes-validate")
    objs = rendered[overlay]
    checked = set()
    for obj in objs:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            pytest.fail(
                f"{overlay} {obj['kind']}/{obj['metadata']['name']} @ {version}: {e.message}"
            )
        checked.add(obj["kind"])
    want = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "StatefulSet",
            "PodDisruptionBudget"}  # fmt: skip
    if overlay == "cluster":
        want.add("NetworkPolicy")  # Ray has no authentication (deploy/overlays/cluster)
    assert checked == want


def test_kubernetes_validate_rejects_a_broken_statefulset(rendered: dict) -> None:
    kv = need(kubernetes_validate, "kubernetes-validate")
    sts = copy.deepcopy(one(rendered["cpu"], "StatefulSet", SERVER))
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/x"
    with pytest.raises(kv.ValidationError):
        kv.validate(sts, kv_utils.latest_version(), strict=True)


def validate_crd_object(obj: dict[str, Any]) -> None:
    models = need(prom_v1, "cloudcoil-models-prometheus-operator")
    model = getattr(models, obj["kind"]).model_validate(obj)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert back == obj, f"{obj['kind']} has fields that its CRD does not know"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_operator_kinds_validate_against_their_crds(
    rendered: dict, overlay: str
) -> None:
    objs = rendered[overlay]
    for kind in CRD_KINDS:
        validate_crd_object(one(objs, kind))


def test_crd_validation_rejects_unknown_and_malformed_fields(rendered: dict) -> None:
    sm = copy.deepcopy(one(rendered["cpu"], "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["scrapeIntervall"] = "15s"
    with pytest.raises(AssertionError, match="does not know"):
        validate_crd_object(sm)
    sm = copy.deepcopy(one(rendered["cpu"], "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(Exception, match="interval"):
        validate_crd_object(sm)


def test_prometheusrule_has_the_plain_rule_files_groups(repo: Path, rendered: dict) -> None:
    plain = yaml.safe_load((repo / "deploy" / "prometheus" / "lam-rules.yaml").read_text())
    for overlay in OVERLAYS:
        rule = one(rendered[overlay], "PrometheusRule")
        assert rule["spec"]["groups"] == plain["groups"], f"{overlay}: PrometheusRule out of sync"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_locked_down(rendered: dict, overlay: str) -> None:
    objs = rendered[overlay]
    for sts in by_kind(objs, "StatefulSet"):  # every pod, the cluster's Ray nodes too
        pod = sts["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] == psc["runAsGroup"] == psc["fsGroup"] == 10001  # the image's
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (c,) = pod["containers"]
        csc = c["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert mounts["/data"] == "data"
    ns = one(objs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {
        ns["metadata"]["name"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ports_and_storage(rendered: dict, overlay: str) -> None:
    objs = rendered[overlay]
    sts = one(objs, "StatefulSet", SERVER)
    c = container(objs)
    cfg = config(objs)
    (port,) = c["ports"]
    assert port["name"] == "http" and str(port["containerPort"]) == cfg["LAM_PORT"]
    assert cfg["LAM_HOST"] == "0.0.0.0" and cfg["LAM_DATA_DIR"] == "/data"
    # The cluster's router also checks its raylet: lam-ray-node asks /healthz itself.
    assert c["livenessProbe"].get("httpGet") == {"path": "/healthz", "port": "http"} or (
        overlay == "cluster"
        and c["livenessProbe"]["exec"]["command"] == ["lam-ray-node", "alive", "/healthz"]
    )
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # Large banks: at least 10 minutes before liveness may restart a starting pod.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # Graceful drain (LAM_SHUTDOWN_TIMEOUT_S = 30 s) fits in the grace period.
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_wiring(rendered: dict, overlay: str) -> None:
    objs = rendered[overlay]
    c = container(objs)
    cm = configmap(objs)
    assert c["envFrom"][0] == {"configMapRef": {"name": cm["metadata"]["name"]}}
    # The cluster's router also reads Ray's settings (the nodes' ConfigMap lam-ray-env).
    extra = [configmap(objs, "lam-ray-env")["metadata"]["name"]] if overlay == "cluster" else []
    assert [e["configMapRef"]["name"] for e in c["envFrom"][1:]] == extra
    assert all(k.startswith("LAM_") for k in cm["data"])
    for each in by_kind(objs, "ConfigMap"):  # keys live in a Secret, never in a ConfigMap
        assert "LAM_API_KEYS" not in each["data"]
    (keys,) = [e for e in c["env"] if e["name"] == "LAM_API_KEYS"]
    ref = keys["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "lam-api-keys", "key": "LAM_API_KEYS"}  # required: fail closed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_the_pods_and_the_monitor_selects_one_service(
    rendered: dict, overlay: str
) -> None:
    objs = rendered[overlay]
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    for each in by_kind(objs, "StatefulSet"):
        pod_labels = each["spec"]["template"]["metadata"]["labels"]
        assert each["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        # Its headless Service (stable per-pod DNS) selects its pods and no other's.
        headless = services[each["spec"]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert selected_statefulsets(objs, headless["spec"]["selector"]) == [
            each["metadata"]["name"]
        ]
    sts = one(objs, "StatefulSet", SERVER)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    for svc in services.values():
        selector = dict(svc["spec"]["selector"])
        # lam-primary pins lam-0 through the label the StatefulSet controller adds.
        pinned = selector.pop("statefulset.kubernetes.io/pod-name", None)
        (target,) = selected_statefulsets(objs, selector)
        assert pinned in (None, f"{target}-0"), svc["metadata"]["name"]
        (c,) = one(objs, "StatefulSet", target)["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names, svc["metadata"]["name"]
    sm = one(objs, "ServiceMonitor")
    want = sm["spec"]["selector"]["matchLabels"].items()
    scraped = [s for s in services.values() if want <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in scraped] == [sts["spec"]["serviceName"]]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert sm["spec"]["jobLabel"] in scraped[0]["metadata"]["labels"]
    assert scraped[0]["metadata"]["labels"][sm["spec"]["jobLabel"]] == "lam"  # job="lam"
    # One budget per StatefulSet, each selecting exactly its pods.
    budgets = [
        selected_statefulsets(objs, pdb["spec"]["selector"]["matchLabels"])
        for pdb in by_kind(objs, "PodDisruptionBudget")
    ]
    assert sorted(budgets) == sorted([s["metadata"]["name"]] for s in by_kind(objs, "StatefulSet"))


def test_overlays_differ_in_device_image_and_gpu(rendered: dict) -> None:
    cpu, gpu = rendered["cpu"], rendered["gpu"]
    assert config(cpu)["LAM_DEVICE"] == "cpu" and config(gpu)["LAM_DEVICE"] == "cuda"
    assert container(cpu)["image"].rsplit(":", 1)[0].endswith("/lam")
    assert container(gpu)["image"].rsplit(":", 1)[0].endswith("/lam-cuda")
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = one(gpu, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    # The patch keeps everything else of the base container.
    assert container(gpu)["securityContext"] == container(cpu)["securityContext"]
    assert container(gpu)["readinessProbe"] == container(cpu)["readinessProbe"]
