"""The Kubernetes manifests: valid against the API schemas, and consistent.

Every object validates offline against the Kubernetes JSON schemas that
kubernetes-validate ships (strict: an unknown or misspelt field fails). Beyond the
schemas: probes, resources and disruption budgets on every service, the fanout shard
sets cover every shard exactly once, and the gateway routes each shard to the set
that consumes it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import deploy_files
from tests.deploy.deploy_files import K8S, manifest_files, manifests, objects

KUBERNETES_VERSION = "1.30"
SERVICE_DEPLOYMENTS = (
    "checkin-api",
    "realtime-fanout-shards-0-7",
    "realtime-fanout-shards-8-15",
    "telemetry-ingest",
)


def _name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("obj", manifests(), ids=_name)
def test_k8s_object_validates_against_the_kubernetes_schema(
    obj: dict[str, Any],
) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_k8s_schema_check_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(objects("Deployment")["checkin-api"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_k8s_kustomization_lists_every_manifest_and_generated_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = [
        K8S / name
        for generator in kustomization["configMapGenerator"]
        for name in generator["files"]
    ]

    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert all(path.is_file() for path in generated), generated


@pytest.mark.parametrize("name", SERVICE_DEPLOYMENTS)
def test_k8s_service_probes_readiness_and_liveness(name: str) -> None:
    container = objects("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"] for port in container["ports"]}

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    assert container["livenessProbe"]["httpGet"]["port"] in ports


@pytest.mark.parametrize("name", [*SERVICE_DEPLOYMENTS, "gateway"])
def test_k8s_deployment_has_resources_a_budget_and_a_service(name: str) -> None:
    deployment = objects("Deployment")[name]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    labels = pod["metadata"]["labels"]
    budgets = [
        b
        for b in objects("PodDisruptionBudget").values()
        if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    services = [
        s
        for s in objects("Service").values()
        if s["spec"]["selector"].items() <= labels.items()
    ]

    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert len(budgets) == 1, budgets
    assert len(services) == 1, services
    autoscalers = objects("HorizontalPodAutoscaler")
    if name in autoscalers:
        assert "replicas" not in deployment["spec"]
        assert autoscalers[name]["spec"]["minReplicas"] >= 2
    else:
        assert deployment["spec"]["replicas"] >= 2
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_k8s_api_scales_horizontally() -> None:
    autoscaler = objects("HorizontalPodAutoscaler")["checkin-api"]

    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "checkin-api"
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert autoscaler["spec"]["maxReplicas"] > autoscaler["spec"]["minReplicas"]


def test_k8s_fanout_shard_sets_cover_every_shard_once() -> None:
    shard_count = int(objects("ConfigMap")["checkin-config"]["data"]["SHARD_COUNT"])
    sets = [
        deploy_files.shards_of(deploy_files.container_env(d)["SHARDS"])
        for name, d in objects("Deployment").items()
        if name.startswith("realtime-fanout")
    ]

    assert len(sets) == 2
    assert sorted(s for shards in sets for s in shards) == list(range(shard_count))


def test_k8s_gateway_routes_each_shard_to_the_set_consuming_it() -> None:
    shard_count = int(objects("ConfigMap")["checkin-config"]["data"]["SHARD_COUNT"])
    services = objects("Service")
    deployments = objects("Deployment")

    assert deploy_files.gateway_shard_count() == shard_count
    for shard in range(shard_count):
        service = services[deploy_files.route_shard(shard)]
        selector = service["spec"]["selector"].items()
        owner = [
            d
            for d in deployments.values()
            if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(owner) == 1, f"shard {shard}: {service['metadata']['name']}"
        assert shard in deploy_files.shards_of(
            deploy_files.container_env(owner[0])["SHARDS"]
        )


def test_k8s_gateway_upstreams_are_services_on_their_ports() -> None:
    services = objects("Service")
    conf = deploy_files.GATEWAY_CONF.read_text()

    for host in deploy_files.gateway_upstreams().values():
        port = services[host]["spec"]["ports"][0]["port"]
        assert f"server {host}:{port};" in conf


def test_k8s_gateway_mounts_the_generated_config() -> None:
    pod = objects("Deployment")["gateway"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}

    assert mounts["/etc/nginx/nginx.conf"]["subPath"] == "nginx.conf"
    assert mounts["/etc/nginx/njs/shard-route.js"]["subPath"] == "shard-route.js"
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config["configMap"]["name"] == "gateway-config"


def test_k8s_jwt_settings_come_from_config_and_secret() -> None:
    config = objects("ConfigMap")["checkin-config"]["data"]
    secret = objects("Secret")["checkin-jwt"]["stringData"]

    assert config["JWT_ALGORITHMS"] == '["RS256"]'
    assert "JWT_PUBLIC_KEY" in secret
    for name in SERVICE_DEPLOYMENTS:
        env = deploy_files.container_env(objects("Deployment")[name])
        assert env["JWT_PUBLIC_KEY"]["secretKeyRef"]["name"] == "checkin-jwt"


def test_k8s_gateway_holds_a_long_poll_longer_than_the_fanout_hold() -> None:
    hold_s = float(objects("ConfigMap")["checkin-config"]["data"]["REALTIME_WAIT_S"])
    conf = deploy_files.GATEWAY_CONF.read_text()
    block = conf.split("location /v1/guest-checkin/realtime/ {", 1)[1].split("}", 1)[0]
    timeout = next(
        line.split()[1].rstrip("s;")
        for line in block.splitlines()
        if line.strip().startswith("proxy_read_timeout")
    )

    assert float(timeout) >= hold_s + 30
    assert "proxy_buffering off;" in block


def test_k8s_gateway_serves_the_same_paths_as_the_local_gateway() -> None:
    local = deploy_files.DEPLOY / "gateway" / "nginx.conf.template"
    if not local.exists():
        pytest.skip("the local gateway config (deploy/gateway) is not there")

    def locations(text: str) -> set[str]:
        return set(re.findall(r"^\s*location ([^{]+?)\s*\{", text, re.M))

    assert locations(deploy_files.GATEWAY_CONF.read_text()) == locations(
        local.read_text()
    )
