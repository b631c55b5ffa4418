"""Prometheus, its alert rules, the Grafana dashboard and the trace collector.

Every query parses as PromQL and reads only series the services really export (the
services' metric modules are imported and their registry read), so a renamed metric
fails here instead of leaving a blank panel or an alert that never fires. Every alert
is explained on the operations page.
"""

from __future__ import annotations

import json
from typing import Any

import promql_parser
import pytest
import yaml

from tests.deploy import deploy_files
from tests.deploy.deploy_files import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "checkin-realtime.json"
REQUIRED_ALERTS = {
    "CheckinOutboxLagHigh",
    "FanoutDown",
    "FanoutConsumerSilent",
    "FanoutNotReady",
    "FanoutDeliveryLatencyP99High",
    "FanoutWaitersNearCap",
    "TelemetryUnavailable",
}
DASHBOARD_METRICS = {
    "fanout_delivery_latency_seconds_bucket",
    "fanout_waiters",
    "checkin_outbox_lag_seconds",
    "telemetry_events_accepted_total",
}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def _grafana_promql(expr: str) -> str:
    """A dashboard query with Grafana's interval variable made plain PromQL."""
    return expr.replace("$__rate_interval", "5m")


def test_prometheus_scrapes_every_service_of_compose() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    compose = deploy_files.compose()["services"]
    wanted = {
        f"{name}:{service['environment']['PORT']}"
        for name, service in compose.items()
        if "PORT" in service.get("environment", {})
    }

    assert wanted <= targets
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_prometheus_alert_rules_cover_the_operations_alerts() -> None:
    rules = _rules()

    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warn"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_prometheus_alert_query_parses_and_reads_exported_series(
    rule: dict[str, Any],
) -> None:
    promql_parser.parse(rule["expr"])

    assert deploy_files.metric_names(rule["expr"]) <= deploy_files.exported_series()


def test_promql_check_rejects_a_broken_query_and_an_unknown_metric() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(fanout_waiters[5m])")
    assert not (
        deploy_files.metric_names("fanout_waiterz > 1")
        <= deploy_files.exported_series()
    )


def test_every_alert_is_explained_on_the_operations_page() -> None:
    page = (DEPLOY / "README.md").read_text()

    for rule in _rules():
        assert f"`{rule['alert']}`" in page, rule["alert"]


def test_dashboard_shows_latency_waiters_outbox_lag_and_telemetry() -> None:
    read = set().union(*(deploy_files.metric_names(q) for q in _dashboard_queries()))

    assert read >= DASHBOARD_METRICS


@pytest.mark.parametrize("expr", _dashboard_queries())
def test_dashboard_query_parses_and_reads_exported_series(expr: str) -> None:
    promql_parser.parse(_grafana_promql(expr))

    assert deploy_files.metric_names(expr) <= deploy_files.exported_series()


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())

    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids
        assert all(target["datasource"]["uid"] in uids for target in panel["targets"])


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/dashboards.yaml").read_text()
    )["providers"][0]
    grafana = deploy_files.compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])

    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_collector_receives_otlp_where_the_services_send_and_exports_to_jaeger() -> (
    None
):
    collector = yaml.safe_load((DEPLOY / "otel/collector.yaml").read_text())
    traces = collector["service"]["pipelines"]["traces"]
    endpoint = deploy_files.env_file()["OTEL_EXPORTER_OTLP_ENDPOINT"]
    http_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]

    assert endpoint.endswith(":" + http_port.rsplit(":", 1)[1])
    assert set(traces["exporters"]) <= set(collector["exporters"])
    assert set(traces["processors"]) <= set(collector["processors"])
    jaeger = collector["exporters"][traces["exporters"][0]]["endpoint"]
    assert jaeger.split(":")[0] in deploy_files.compose()["services"]
