"""Running a service as a real process for end-to-end tests.

``ServiceProcess`` starts ``python -m <module>`` with the given environment on a free
port, waits until ``/healthz`` answers, keeps its output in a log file the test can
read (and that is printed when the test fails), and stops it with SIGTERM or SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """One service process on loopback, started and stopped by a test."""

    def __init__(self, module: str, env: dict[str, str], port: int | None = None):
        self.module = module
        self.port = port or free_port()
        self.env = {**os.environ, **env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.log_path = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/healthz", timeout_s: float = 20.0) -> None:
        """Start the process and wait until ``ready_path`` answers 200."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited early:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.module} not ready in {timeout_s}s:\n{self.logs()}")

    def logs(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        return self._stop(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        """SIGKILL: the process gets no chance to clean up."""
        return self._stop(signal.SIGKILL, 5.0)

    def _stop(self, sig: signal.Signals, timeout_s: float) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=5)
        finally:
            self.process = None
