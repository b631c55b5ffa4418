"""deploy/compose.yaml: valid for compose, complete, and in step with the gateway.

``docker compose config -q`` is the authority and runs when the docker client with
the compose plugin (or a standalone compose v2) is installed. The compose-spec JSON
schema (shipped by check-jsonschema) validates the same file offline everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from check_jsonschema.builtin_schemas import get_builtin_schema
from jsonschema.validators import validator_for

from tests.deploy import deploy_files
from tests.deploy.deploy_files import DEPLOY, REPO

FANOUTS = ("realtime-fanout-shards-0-7", "realtime-fanout-shards-8-15")
REQUIRED_ENV = {
    "checkin-api": {"PORT", "HOST", "DATABASE_URL", "AMQP_URL", "JWT_ALGORITHMS"},
    "realtime-fanout-shards-0-7": {"PORT", "HOST", "AMQP_URL", "CHECKIN_API_URL"},
    "realtime-fanout-shards-8-15": {"PORT", "HOST", "AMQP_URL", "CHECKIN_API_URL"},
    "telemetry-ingest": {"PORT", "HOST", "DATABASE_URL", "JWT_ALGORITHMS"},
}
STACK = {"rabbitmq", "postgres", "gateway", "otel-collector", "jaeger"}
STACK |= {"prometheus", "grafana", *REQUIRED_ENV}


def _compose_command() -> list[str] | None:
    """``docker compose`` (the client's plugin), else a standalone compose v2."""
    candidates = []
    if shutil.which("docker") is not None:
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose") is not None:
        candidates.append(["docker-compose"])
    for command in candidates:
        answer = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=30
        )
        if answer.returncode == 0 and answer.stdout.strip().lstrip("v")[:1] >= "2":
            return command
    return None


def test_compose_config_validates_with_docker_compose() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no docker client with the compose plugin (nor a compose v2 binary); "
            "the compose-spec schema test still validates the file"
        )

    answer = subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )

    assert answer.returncode == 0, answer.stderr


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(document)]


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    assert _schema_errors(deploy_files.compose()) == []


def test_compose_spec_schema_rejects_a_misspelt_key() -> None:
    document = deploy_files.compose()
    document["services"]["gateway"]["port"] = document["services"]["gateway"].pop(
        "ports"
    )

    assert _schema_errors(document) != []


def test_compose_variables_are_all_defined_in_the_env_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()

    deploy_files.interpolate(text, deploy_files.env_file())


def test_compose_runs_the_whole_stack() -> None:
    assert set(deploy_files.compose()["services"]) == STACK


@pytest.mark.parametrize("service", sorted(REQUIRED_ENV))
def test_compose_service_gets_the_environment_of_its_contract(service: str) -> None:
    environment = deploy_files.compose()["services"][service]["environment"]

    assert REQUIRED_ENV[service] <= set(environment)
    assert environment["HOST"] == "0.0.0.0"
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith(
        "http://otel-collector"
    )


def test_compose_builds_every_image_from_the_repository_root() -> None:
    for name, service in deploy_files.compose()["services"].items():
        build = service.get("build")
        if build is None:
            continue
        assert (DEPLOY / build["context"]).resolve() == REPO, name
        assert (REPO / build["dockerfile"]).is_file(), name


def test_compose_waits_only_on_services_that_report_health() -> None:
    services = deploy_files.compose()["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            continue
        for dependency, rule in depends_on.items():
            if rule["condition"] == "service_healthy":
                target = services[dependency]
                dockerfile = (target.get("build") or {}).get("dockerfile")
                has_image_check = (
                    dockerfile is not None
                    and "HEALTHCHECK" in (REPO / dockerfile).read_text()
                )
                assert "healthcheck" in target or has_image_check, (name, dependency)


def test_compose_fanout_shard_sets_match_the_gateway_routing() -> None:
    services = deploy_files.compose()["services"]
    shard_count = int(deploy_files.env_file()["SHARD_COUNT"])
    sets = {
        name: deploy_files.shards_of(services[name]["environment"]["SHARDS"])
        for name in FANOUTS
    }

    assert sorted(s for shards in sets.values() for s in shards) == list(
        range(shard_count)
    )
    for shard in range(shard_count):
        assert shard in sets[deploy_files.route_shard(shard)]


def test_compose_gateway_publishes_the_gateway_port() -> None:
    gateway = deploy_files.compose()["services"]["gateway"]
    port = deploy_files.env_file()["GATEWAY_PORT"]

    assert gateway["ports"] == [f"{port}:8080"]


def test_compose_gateway_upstreams_are_services_on_their_ports() -> None:
    services = deploy_files.compose()["services"]
    conf = deploy_files.GATEWAY_CONF.read_text()

    for host in deploy_files.gateway_upstreams().values():
        port = services[host]["environment"]["PORT"]
        assert f"server {host}:{port};" in conf
