"""Reading deploy/ the way compose, Kubernetes and nginx read it, for the tests.

Small loaders only: YAML documents of a manifest file, compose.yaml with deploy/.env
substituted, the fanout shard sets each deployment consumes, the shard map and
upstreams of the gateway config, and the metric series the services export.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
GATEWAY_CONF = K8S / "gateway" / "nginx.conf"
PYTHON_SERVICES = {
    "checkin-api": "checkin_api",
    "realtime-fanout": "realtime_fanout",
    "telemetry-ingest": "telemetry_ingest",
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def env_file() -> dict[str, str]:
    """The variables of deploy/.env, as compose reads them."""
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, values: dict[str, str]) -> str:
    """Substitute ``${NAME}`` and ``${NAME:-default}`` like compose; ``$$`` stays."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        if name in values:
            return values[name]
        if default is not None:
            return default
        raise KeyError(f"${{{name}}} is not defined in deploy/.env")

    escaped = text.replace("$$", "\0")
    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", one, escaped).replace("\0", "$")


def compose() -> dict[str, Any]:
    """deploy/compose.yaml with the variables of deploy/.env substituted into its
    values (as compose does: after parsing, so ``[0,1]`` from .env stays a string)."""
    values = env_file()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str):
            return interpolate(node, values)
        return node

    loaded: dict[str, Any] = walk(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))
    return loaded


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/k8s (not the kustomization)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object of deploy/k8s (a fresh copy: callers may edit it)."""
    return copy.deepcopy(_parsed_manifests())


@functools.cache
def _parsed_manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in manifest_files()
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """The objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in manifests() if o["kind"] == kind}


def container_env(deployment: dict[str, Any]) -> dict[str, Any]:
    """The literal env entries of a deployment's first container, by name."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def gateway_shard_map() -> list[tuple[str, str]]:
    """The gateway's ``$fanout_shard`` map: (regex, upstream) in nginx's order."""
    conf = GATEWAY_CONF.read_text()
    block = re.search(r"map \$fanout_shard \$fanout_shard_set \{(.*?)\}", conf, re.S)
    assert block is not None, "the gateway config has no fanout shard map"
    entries = []
    for line in block.group(1).splitlines():
        line = line.split("#")[0].strip().rstrip(";")
        if line:
            key, upstream = line.split()
            entries.append((key, upstream))
    return entries


def gateway_upstreams() -> dict[str, str]:
    """Upstream name -> the host it proxies to, from the gateway config."""
    conf = GATEWAY_CONF.read_text()
    found = re.findall(r"upstream (\w+) \{\s*server ([\w.-]+):(\d+);", conf)
    return {name: host for name, host, _ in found}


def gateway_shard_count() -> int:
    """The shard count the gateway's routing script divides by."""
    found = re.search(r"set \$shard_count (\d+);", GATEWAY_CONF.read_text())
    assert found is not None
    return int(found.group(1))


def route_shard(shard: int) -> str:
    """The upstream host the gateway sends a poll of this shard to (nginx map rules:
    regexes in order of appearance, then the default)."""
    entries = gateway_shard_map()
    upstream = dict(entries).get("default")
    for key, name in entries:
        if key.startswith("~") and re.search(key[1:], str(shard)):
            upstream = name
            break
    assert upstream is not None
    return gateway_upstreams()[upstream]


def shards_of(value: str) -> set[int]:
    """The shards of a fanout's ``SHARDS`` setting (a JSON list)."""
    parsed = json.loads(value)
    assert isinstance(parsed, list)
    return {int(s) for s in parsed}


@functools.cache
def exported_series() -> frozenset[str]:
    """Every sample name the three services' Prometheus metrics can expose."""
    from prometheus_client import REGISTRY

    for module in PYTHON_SERVICES.values():
        importlib.import_module(f"{module}.app")
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)


def metric_names(promql: str) -> set[str]:
    """Names of the product's series a query reads (checkin_, fanout_, telemetry_)."""
    return set(re.findall(r"\b((?:checkin|fanout|telemetry)_[a-z0-9_]+)\b", promql))
