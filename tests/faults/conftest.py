"""Fixtures of the fault suite: a throwaway database, and a stack of real processes.

``stack`` starts the check-in API and the fanout as processes (through
``tests.support.realtime``) and the TCP proxies put in front of RabbitMQ or
PostgreSQL to take them away; everything it started is stopped after the test.
Processes are started in a thread, because the proxies forward on the test's own
event loop and a service that migrates through a proxy needs it running.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support.infra import Infra, fresh_database
from tests.support.processes import ServiceProcess
from tests.support.realtime import api_process, fanout_process
from tests.support.tcp_proxy import TcpProxy, proxy_to, through

logger = logging.getLogger(__name__)

WAIT_S = 2.0


class Stack:
    """The processes and proxies of one fault test."""

    def __init__(self, infra: Infra, database_url: str, exchange: str) -> None:
        self.infra, self.database_url, self.exchange = infra, database_url, exchange
        self.processes: list[ServiceProcess] = []
        self.proxies: list[TcpProxy] = []

    async def proxy(self, url: str, started: bool = True) -> tuple[TcpProxy, str]:
        """A proxy in front of ``url`` and the URL through it."""
        proxy = proxy_to(url)
        if started:
            await proxy.start()
        self.proxies.append(proxy)
        return proxy, through(url, proxy)

    async def api(
        self,
        amqp_url: str | None = None,
        database_url: str | None = None,
        port: int | None = None,
        **env: str,
    ) -> ServiceProcess:
        """Start the check-in API and wait until it answers ``/healthz``."""
        process = api_process(
            database_url or self.database_url,
            amqp_url or self.infra.amqp_url,
            self.exchange,
            **env,
        )
        if port is not None:
            process = _on_port(process, port)
        return await self.start(process, "/healthz")

    async def fanout(
        self,
        api: ServiceProcess,
        amqp_url: str | None = None,
        port: int | None = None,
        ready: str = "/readyz",
        **env: str,
    ) -> ServiceProcess:
        """Start the fanout and wait until ``ready`` answers 200 (by default: until
        it is ready, its consumer attached; ``/healthz`` when the broker is away)."""
        process = fanout_process(
            amqp_url or self.infra.amqp_url, self.exchange, api.url, WAIT_S, **env
        )
        if port is not None:
            process = _on_port(process, port)
        return await self.start(process, ready)

    async def start(self, process: ServiceProcess, ready: str) -> ServiceProcess:
        """Start any service process of the test; it is stopped after the test."""
        self.processes.append(process)
        await asyncio.to_thread(process.start, ready, 30.0)
        return process

    async def close(self) -> None:
        for process in self.processes:
            await asyncio.to_thread(process.terminate, 5.0)
        for proxy in self.proxies:
            await proxy.stop()


def _on_port(process: ServiceProcess, port: int) -> ServiceProcess:
    process.port = port
    process.env["PORT"] = str(port)
    return process


@pytest.fixture
def database_url(infra: Infra) -> Iterator[str]:
    """An empty database of this test alone."""
    with fresh_database(infra, "faults") as url:
        yield url


@pytest.fixture
async def stack(
    infra: Infra, database_url: str, exchange_name: str
) -> AsyncIterator[Stack]:
    started = Stack(infra, database_url, exchange_name)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
def org() -> int:
    """An org no other test uses: its sequence starts at 0."""
    return random.randint(10_000, 2**40)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        yield session
