"""The three services as real processes, shared by the hostile-input tests of a module.

Each module gets its own databases and exchange: the check-in API, the fanout that
asks it for positions, and telemetry-ingest (with rate limits raised so the
generated requests are judged on their content, not their number).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest

from tests.support.infra import Infra, delete_exchange_topology, fresh_database
from tests.support.processes import ServiceProcess
from tests.support.realtime import api_process, fanout_process
from tests.support.tokens import AUTH_ENV

logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def hostile_exchange(infra: Infra) -> Iterator[str]:
    """An exchange of this module alone, deleted with its dead letters afterwards."""
    name = f"test.events.hostile.{uuid.uuid4().hex[:10]}"
    yield name
    try:
        asyncio.run(delete_exchange_topology(infra.amqp_url, name))
    except Exception:
        logger.warning("could not delete test exchange %s", name, exc_info=True)


@pytest.fixture(scope="module")
def api(infra: Infra, hostile_exchange: str) -> Iterator[ServiceProcess]:
    with fresh_database(infra, "hostile_api") as database_url:
        process = api_process(database_url, infra.amqp_url, hostile_exchange)
        process.start(timeout_s=30)
        try:
            yield process
        finally:
            process.terminate()


@pytest.fixture(scope="module")
def fanout(
    infra: Infra, hostile_exchange: str, api: ServiceProcess
) -> Iterator[ServiceProcess]:
    process = fanout_process(infra.amqp_url, hostile_exchange, api.url, wait_s=0.5)
    process.start(ready_path="/readyz", timeout_s=30)
    try:
        yield process
    finally:
        process.terminate()


@pytest.fixture(scope="module")
def telemetry(infra: Infra) -> Iterator[ServiceProcess]:
    with fresh_database(infra, "hostile_telemetry") as database_url:
        process = ServiceProcess(
            "telemetry_ingest",
            {
                **AUTH_ENV,
                "DATABASE_URL": database_url,
                "FLUSH_INTERVAL_S": "0.2",
                "RATE_LIMIT_PER_MINUTE": "100000",
                "RATE_LIMIT_PER_IP_PER_MINUTE": "100000",
            },
        )
        process.start(timeout_s=30)
        try:
            yield process
        finally:
            process.terminate()
