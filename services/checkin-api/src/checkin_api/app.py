"""The check-in API's application factory: one place that wires the service.

``create_app`` builds the aiohttp application from the settings. Everything with a
lifetime is opened and closed in ``cleanup_ctx``, in order: the schema migration,
the database pool, then the outbox relay task (cancelled and awaited on shutdown).

The API starts while PostgreSQL is away: migrating and opening the pool are tried
at once and, if the database does not answer, again in the background with capped
backoff (``service_kit.startup``). Until they succeed ``/readyz`` is 503 and every
read or write is answered 503 with ``Retry-After`` at once; the relay starts once
the schema is there. A broker away at start only delays the relay: writes succeed
and their events wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import sqlalchemy.exc
from aiohttp import web
from service_kit.auth import AuthSettings, TokenVerifier
from service_kit.startup import start_or_retry
from service_kit.web import READINESS_INFO_KEY, READINESS_KEY, base_app

from checkin_api import http
from checkin_api.migrate import upgrade_to_head
from checkin_api.relay import OutboxRelay
from checkin_api.settings import ApiSettings
from checkin_api.store import CheckinStore

logger = logging.getLogger(__name__)

RELAY_KEY = web.AppKey("outbox_relay", OutboxRelay)
READINESS_TIMEOUT_S = 2.0
RELAY_STOP_TIMEOUT_S = 10.0
DATABASE_AWAY = (*http.DATABASE_DOWN, sqlalchemy.exc.OperationalError)
"""What migrating or opening the pool raises while the database is away."""


def create_app(settings: ApiSettings, auth: AuthSettings) -> web.Application:
    """The check-in API application, ready for ``web.run_app`` or a test server."""
    app = base_app(
        TokenVerifier(auth),
        middlewares=[http.error_mapping],
        client_max_size=settings.max_document_bytes + 1024**2,
    )
    app[http.SETTINGS_KEY] = settings
    app[http.AUTH_SETTINGS_KEY] = auth
    app[RELAY_KEY] = OutboxRelay(settings)
    app[http.STORE_KEY] = CheckinStore(None, settings.db_acquire_timeout_s)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_relay)
    app[READINESS_KEY]["database"] = lambda: _database_ready(app)
    app[READINESS_INFO_KEY]["broker"] = lambda: _broker_state(app)
    http.add_routes(app, settings.local_mode)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[http.SETTINGS_KEY]
    store = app[http.STORE_KEY]
    pools: list[asyncpg.Pool] = []

    async def migrate_and_open() -> None:
        if settings.migrate_on_start:
            await asyncio.to_thread(
                upgrade_to_head, settings.database_url, settings.db_connect_timeout_s
            )
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            timeout=settings.db_connect_timeout_s,
            command_timeout=settings.db_command_timeout_s,
            reset=_reset_connection,
        )
        pools.append(pool)
        store.attach(pool)
        logger.info("database pool open max_size=%s", settings.db_pool_max_size)

    retrying = await start_or_retry(
        migrate_and_open,
        "database",
        DATABASE_AWAY,
        settings.connect_retry_min_s,
        settings.connect_retry_max_s,
    )
    yield
    if retrying is not None:
        retrying.cancel()
        await asyncio.gather(retrying, return_exceptions=True)
    for pool in pools:
        try:
            await asyncio.wait_for(pool.close(), timeout=5)
        except TimeoutError:
            pool.terminate()
        logger.info("database pool closed")


async def _reset_connection(connection: asyncpg.Connection) -> None:
    """Hand a connection back to the pool without asyncpg's reset round trip.

    The API keeps no session state on pooled connections (no LISTEN, advisory lock,
    SET or cursor: the relay uses its own connection), so the default reset query
    is one more round trip per request for nothing. A transaction left open by a
    cancelled request is rolled back.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _relay(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        _relay_once_migrated(app[http.STORE_KEY], app[RELAY_KEY]), name="outbox-relay"
    )
    yield
    task.cancel()
    # Bounded: shutdown must not wait on a broker or database that does not answer.
    # Rows the relay did not mark are published again by the next relay.
    done, _ = await asyncio.wait({task}, timeout=RELAY_STOP_TIMEOUT_S)
    if not done:
        logger.warning("outbox relay did not stop within %.0fs", RELAY_STOP_TIMEOUT_S)
    else:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    logger.info("outbox relay stopped")


async def _relay_once_migrated(store: CheckinStore, relay: OutboxRelay) -> None:
    """Run the relay once the database answered and its outbox table exists."""
    await store.wait_attached()
    await relay.run()


async def _database_ready(app: web.Application) -> str | None:
    store = app[http.STORE_KEY]
    if not store.attached:
        return "the database has not answered since start (not migrated, no pool)"
    await asyncio.wait_for(store.ping(), timeout=READINESS_TIMEOUT_S)
    return None


async def _broker_state(app: web.Application) -> str:
    relay = app[RELAY_KEY]
    role = "leader" if relay.is_leader else "standby"
    return f"{relay.broker_state} ({role})"
