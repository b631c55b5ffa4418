"""Nchan, the peer we measure against: nginx with the Nchan module as our own process.

One worker, a long-poll subscriber location and a publisher location, configured like
the fanout: a buffer of 200 messages per channel, 25 s message expiry, 25 s hold. The
channel id is the org id taken from the path (``/sub/<org>``, ``/pub/<org>``).
nginx runs in the foreground (``daemon off``) with a prefix directory of its own, so
nothing of the system's nginx is touched.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"

CONFIG = """\
load_module {module};
worker_processes 1;
worker_rlimit_nofile {files};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{
    worker_connections {connections};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    nchan_shared_memory_size 256M;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /nchan_status {{
            nchan_stub_status;
        }}
        location ~ ^/sub/(\\d+)$ {{
            nchan_subscriber longpoll;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
            nchan_subscriber_timeout 25s;
        }}
        location ~ ^/pub/(\\d+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 200;
            nchan_message_timeout 25s;
        }}
    }}
}}
"""


def nchan_installed() -> bool:
    """True when nginx and the Nchan module are on this machine."""
    return shutil.which("nginx") is not None and Path(MODULE).exists()


class NchanServer:
    """nginx + Nchan on a loopback port, started and stopped by the bench."""

    def __init__(self, port: int, files: int = 20000) -> None:
        self.port = port
        self.files = files
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nchan-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def render(self) -> Path:
        """Write the configuration into the prefix directory; return its path."""
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            CONFIG.format(
                module=MODULE,
                prefix=self.prefix,
                port=self.port,
                files=self.files,
                connections=self.files - 100,
            )
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> None:
        conf = self.render()
        log = (self.prefix / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited: " + self.logs())
            if self.worker_pid() is not None and self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("nginx not ready: " + self.logs())

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/pub/1", timeout=1) as answer:
                return answer.status in (200, 404)
        except urllib.error.HTTPError as exc:
            return exc.code == 404
        except OSError:
            return False

    def worker_pid(self) -> int | None:
        """The pid of the one nginx worker (where Nchan's work and memory are)."""
        if self.process is None:
            return None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def pids(self) -> list[int]:
        """Master and worker, for RSS and CPU."""
        worker = self.worker_pid()
        master = [self.process.pid] if self.process is not None else []
        return master + ([worker] if worker is not None else [])

    def subscribers(self) -> int:
        """Every subscriber Nchan holds right now, over all channels."""
        with urllib.request.urlopen(self.url + "/nchan_status", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("subscribers:"):
                    return int(line.split(":")[1])
        return 0

    def logs(self) -> str:
        parts = []
        for name in ("stdout.log", "error.log"):
            path = self.prefix / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        shutil.rmtree(self.prefix, ignore_errors=True)
