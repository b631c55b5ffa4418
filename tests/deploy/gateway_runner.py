"""Running the container gateway config in a real nginx on loopback, for the tests.

The config (deploy/k8s/gateway/nginx.conf) names its upstreams by the compose and
Kubernetes service names; here each name is pointed at a local port instead, the
paths of the container image (njs module, mime types, /tmp, the web root) are
replaced by local ones, and nginx runs in the foreground until the test ends.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.deploy.deploy_files import GATEWAY_CONF
from tests.support.polling import wait_until
from tests.support.processes import free_port

logger = logging.getLogger(__name__)

NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
MIME_TYPES = Path("/etc/nginx/mime.types")
MISSING_REASON = (
    "needs nginx with the njs module (Debian: nginx libnginx-mod-http-js; "
    "scripts/ensure-system.sh installs both)"
)


def gateway_missing() -> bool:
    """True when this machine cannot run the gateway config."""
    return (
        shutil.which("nginx") is None
        or not NJS_MODULE.exists()
        or not MIME_TYPES.exists()
    )


def status_of(url: str) -> int:
    """The HTTP status of a GET, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError):
        return 0


@contextlib.contextmanager
def running_gateway(
    prefix: Path, upstream_ports: dict[str, int], web_root: Path | None = None
) -> Iterator[str]:
    """nginx with the gateway config and the given upstreams; yields its base URL."""
    prefix.chmod(0o755)
    port = free_port()
    conf = GATEWAY_CONF.read_text()
    conf = conf.replace("modules/ngx_http_js_module.so", str(NJS_MODULE))
    conf = conf.replace("include mime.types;", f"include {MIME_TYPES};")
    # The config's own /tmp/ paths move under the prefix first, so that a checkout
    # which itself lives under /tmp keeps its js_path.
    conf = conf.replace("/tmp/", f"{prefix}/")
    conf = conf.replace("js_path /etc/nginx/njs/;", f"js_path {GATEWAY_CONF.parent}/;")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("root /usr/share/nginx/html;", f"root {web_root or prefix};")
    for name, upstream_port in upstream_ports.items():
        pattern = rf"server {re.escape(name)}:\d+;"
        conf = re.sub(pattern, f"server 127.0.0.1:{upstream_port};", conf)
    (prefix / "nginx.conf").write_text(conf)

    command = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: status_of(base + "/gateway/healthz") == 200, "gateway up")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
