"""``python -m telemetry_ingest``: run the service until SIGTERM or Ctrl-C.

On SIGTERM the server stops listening, then the writer stores every event it had
accepted, then the pool closes and the process exits.
"""

from __future__ import annotations

import logging

from aiohttp import web
from service_kit import startup
from service_kit.logs import configure_logging
from service_kit.tracing import configure_tracing

from telemetry_ingest.app import create_app
from telemetry_ingest.settings import TelemetrySettings

logger = logging.getLogger(__name__)

SERVICE = "telemetry-ingest"


def main() -> None:
    """Read the settings once, then serve."""
    settings = TelemetrySettings()
    configure_logging(SERVICE, settings.log_level)
    configure_tracing(SERVICE)
    logger.info("starting host=%s port=%d", settings.host, settings.port)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=5.0,
        print=None,
        access_log=None,
    )
    if startup.exit_code():
        raise SystemExit(startup.exit_code())


if __name__ == "__main__":
    main()
