"""The system under test for the browser suite, started once per session.

checkin-api, realtime-fanout and telemetry-ingest run as real processes against the
local RabbitMQ and PostgreSQL (fresh databases, an exchange of this session alone, a
3 s hold), behind the real nginx gateway; Chromium from Debian is driven by Playwright
through the gateway, exactly as a person would open the demo page.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, sync_playwright

from tests.support.infra import Infra, fresh_database
from tests.support.polling import wait_until
from tests.support.processes import ServiceProcess, free_port
from tests.support.tokens import AUTH_ENV

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOLD_S = 3.0

Contexts = Callable[[str], BrowserContext]


@dataclass(frozen=True)
class System:
    """Where the browser finds the system: the gateway's URL and the services."""

    url: str
    api: ServiceProcess
    fanout: ServiceProcess
    telemetry: ServiceProcess
    gateway_prefix: Path

    def gateway_log(self) -> str:
        """nginx's access log: one line per request that passed the gateway."""
        path = self.gateway_prefix / "access.log"
        return path.read_text() if path.exists() else ""


class Gateway:
    """nginx rendered from deploy/gateway, as the current user, in a temp prefix."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="gateway-"))
        self.env = {
            "GATEWAY_PORT": str(self.port),
            "CHECKIN_API_PORT": str(ports["api"]),
            "FANOUT_PORT": str(ports["fanout"]),
            "TELEMETRY_PORT": str(ports["telemetry"]),
            "PATH": "/usr/sbin:/usr/bin:/bin",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        render = ROOT / "deploy" / "gateway" / "render.sh"
        conf = subprocess.run(
            ["bash", str(render), str(self.prefix)],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        log = (self.prefix / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [
                "nginx",
                "-c",
                conf,
                "-p",
                str(self.prefix),
                "-e",
                str(self.prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, "the gateway to answer", timeout_s=10)

    def _answers(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/gateway/healthz"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture(scope="package")
def system(infra: Infra) -> Iterator[System]:
    """All three services and the gateway, on free ports, for the whole suite."""
    exchange = f"test.events.browser.{uuid.uuid4().hex[:10]}"
    common = {**AUTH_ENV, "AMQP_URL": infra.amqp_url, "EVENTS_EXCHANGE": exchange}
    with (
        fresh_database(infra, "browser_api") as api_db,
        fresh_database(infra, "browser_tel") as telemetry_db,
    ):
        api = ServiceProcess(
            "checkin_api",
            {
                **common,
                "DATABASE_URL": api_db,
                "LOCAL_MODE": "true",
                "RELAY_SWEEP_S": "0.5",
            },
        )
        api.start()
        fanout = ServiceProcess(
            "realtime_fanout",
            {**common, "CHECKIN_API_URL": api.url, "REALTIME_WAIT_S": str(HOLD_S)},
        )
        telemetry = ServiceProcess(
            "telemetry_ingest", {**common, "DATABASE_URL": telemetry_db}
        )
        gateway: Gateway | None = None
        try:
            fanout.start()
            telemetry.start()
            gateway = Gateway(
                {"api": api.port, "fanout": fanout.port, "telemetry": telemetry.port}
            )
            gateway.start()
            yield System(
                url=f"http://127.0.0.1:{gateway.port}",
                api=api,
                fanout=fanout,
                telemetry=telemetry,
                gateway_prefix=gateway.prefix,
            )
        finally:
            if gateway is not None:
                gateway.stop()
            for service in (telemetry, fanout, api):
                service.terminate()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; never a downloaded browser."""
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Contexts]:
    """Fresh browser profiles for one test (closed after it, pass or fail); the
    argument is an init script run before the page's own scripts ("" for none)."""
    opened: list[BrowserContext] = []

    def open_context(init_script: str = "") -> BrowserContext:
        context = browser.new_context(viewport={"width": 1360, "height": 820})
        if init_script:
            context.add_init_script(init_script)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


@pytest.fixture(scope="package")
def figures(artifacts: Path) -> Iterator[dict[str, object]]:
    """Measurements the tests make, written to artifacts/browser-figures.json."""
    measured: dict[str, object] = {}
    yield measured
    (artifacts / "browser-figures.json").write_text(json.dumps(measured, indent=2))
