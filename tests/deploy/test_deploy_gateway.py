"""The container gateway's routing, run in a real nginx with stand-in upstreams.

deploy/k8s/gateway/nginx.conf (used by compose and Kubernetes alike) sends each
long-poll to the fanout shard set that consumes its org's shard. Here nginx runs that
config with the upstream host names pointed at small local HTTP servers that answer
with their own name, so a test sees which shard set a poll reached.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from checkin_events import shard_for

from tests.deploy.gateway_runner import MISSING_REASON, gateway_missing, running_gateway
from tests.support.processes import free_port
from tests.support.tokens import token

UPSTREAMS = (
    "checkin-api",
    "realtime-fanout-shards-0-7",
    "realtime-fanout-shards-8-15",
    "telemetry-ingest",
)
SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe?lastEventId=0"

pytestmark = pytest.mark.skipif(gateway_missing(), reason=MISSING_REASON)


class _NamedHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with the name of the upstream it stands in for."""

    def do_GET(self) -> None:
        body = f"{self.server.upstream_name} {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway config running in nginx; yields its base URL."""
    servers = []
    ports: dict[str, int] = {}
    for name in UPSTREAMS:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NamedHandler)
        server.upstream_name = name  # type: ignore[attr-defined]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        ports[name] = server.server_address[1]
    try:
        with running_gateway(tmp_path_factory.mktemp("gateway"), ports) as base:
            yield base
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _get(url: str, authorization: str | None = None) -> tuple[str, dict[str, str]]:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode(), dict(answer.headers)


@pytest.mark.parametrize("org_id", [1, 3, 7, 8, 12, 15, 16, 31, 2**40 + 9])
def test_gateway_routes_a_poll_to_the_shard_set_owning_its_org(
    gateway: str, org_id: int
) -> None:
    shard = shard_for(org_id)
    expected = (
        "realtime-fanout-shards-0-7" if shard < 8 else "realtime-fanout-shards-8-15"
    )

    body, headers = _get(gateway + SUBSCRIBE, f"Bearer {token(org_id)}")

    assert body.split(" ")[0] == expected
    assert headers["X-Fanout-Shard"] == str(shard)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer e30.e30."],
)
def test_gateway_sends_a_poll_without_a_readable_org_to_the_first_set(
    gateway: str, authorization: str | None
) -> None:
    body, _ = _get(gateway + SUBSCRIBE, authorization)

    assert body.split(" ")[0] == "realtime-fanout-shards-0-7"


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/v1/guest-checkins?propertyId=11", "checkin-api"),
        ("/v1/guest-checkins/position", "checkin-api"),
        ("/telemetry/client", "telemetry-ingest"),
    ],
)
def test_gateway_routes_the_other_paths_to_their_service(
    gateway: str, path: str, upstream: str
) -> None:
    body, _ = _get(gateway + path, f"Bearer {token(12)}")

    assert body == f"{upstream} {path}"


def _error_of(request: urllib.request.Request) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_a_body_above_the_gateways_cap_is_a_json_413(gateway: str) -> None:
    request = urllib.request.Request(
        gateway + "/v1/guest-checkins/1/documents",
        data=b"x" * (13 * 1024 * 1024),
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )

    status, headers, body = _error_of(request)

    assert status == 413
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"] == "payload_too_large"


def test_a_missing_page_is_a_json_404(gateway: str) -> None:
    status, headers, body = _error_of(urllib.request.Request(gateway + "/nope"))

    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"] == "not_found"


def test_a_service_that_does_not_answer_is_a_json_503_with_retry_after(
    tmp_path: Path,
) -> None:
    closed = {name: free_port() for name in UPSTREAMS}

    with running_gateway(tmp_path, closed) as base:
        answers = [
            _error_of(urllib.request.Request(base + path))
            for path in (SUBSCRIBE, "/v1/guest-checkins", "/telemetry/client")
        ]

    for status, headers, body in answers:
        assert status == 503
        assert headers["Content-Type"].startswith("application/json")
        assert headers["Retry-After"] == "5"
        assert body["error"] == "unavailable"
