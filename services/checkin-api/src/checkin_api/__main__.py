"""Run the check-in API: ``python -m checkin_api`` (stops cleanly on SIGTERM).

The loop is uvloop: its C transports make each socket write (a database statement,
an answer, a publish) cheaper; see the commit that added it for the figures.
"""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web
from service_kit import startup
from service_kit.auth import AuthSettings
from service_kit.logs import configure_logging
from service_kit.tracing import configure_tracing

from checkin_api.app import create_app
from checkin_api.settings import ApiSettings

logger = logging.getLogger(__name__)


def main() -> None:
    """Read the settings once, then serve until SIGTERM or SIGINT."""
    settings = ApiSettings()
    configure_logging("checkin-api", settings.log_level)
    configure_tracing("checkin-api")
    logger.info(
        "checkin-api starting port=%s local_mode=%s", settings.port, settings.local_mode
    )
    web.run_app(
        create_app(settings, AuthSettings()),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=5.0,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )
    logger.info("checkin-api stopped")
    if startup.exit_code():
        raise SystemExit(startup.exit_code())


if __name__ == "__main__":
    main()
