"""The container gateway's routing, run in a real nginx with stand-in upstreams.

deploy/k8s/gateway/nginx.conf (used by compose and Kubernetes alike) sends each
long-poll to the fanout shard set that consumes its org's shard. Here nginx runs that
config with the upstream host names pointed at small local HTTP servers that answer
with their own name, so a test sees which shard set a poll reached.
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from checkin_events import shard_for

from tests.support.polling import wait_until
from tests.support.processes import free_port
from tests.support.tokens import token

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "gateway"
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
MIME_TYPES = Path("/etc/nginx/mime.types")
UPSTREAMS = (
    "checkin-api",
    "realtime-fanout-shards-0-7",
    "realtime-fanout-shards-8-15",
    "telemetry-ingest",
)
SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe?lastEventId=0"

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None or not NJS_MODULE.exists() or not MIME_TYPES.exists(),
    reason="needs nginx with the njs module (Debian: nginx libnginx-mod-http-js; "
    "scripts/ensure-system.sh installs both)",
)


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

    prefix = tmp_path_factory.mktemp("gateway")
    prefix.chmod(0o755)
    port = free_port()
    conf = (GATEWAY_DIR / "nginx.conf").read_text()
    conf = conf.replace("modules/ngx_http_js_module.so", str(NJS_MODULE))
    conf = conf.replace("include mime.types;", f"include {MIME_TYPES};")
    conf = conf.replace("js_path /etc/nginx/njs/;", f"js_path {GATEWAY_DIR}/;")
    conf = conf.replace("/tmp/", f"{prefix}/")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("root /usr/share/nginx/html;", f"root {prefix};")
    for name, upstream_port in ports.items():
        conf = re.sub(
            rf"server {re.escape(name)}:\d+;",
            f"server 127.0.0.1:{upstream_port};",
            conf,
        )
    (prefix / "nginx.conf").write_text(conf)

    command = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(base + "/gateway/healthz") == 200, "gateway up")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in servers:
            server.shutdown()
            server.server_close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except (urllib.error.URLError, ConnectionError):
        return 0


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
