"""A TCP proxy a test opens, cuts and black-holes to take a dependency away.

``TcpProxy(host, port)`` owns a free loopback port; a service under test is pointed
at ``proxy.port`` instead of the real broker or database. ``start()`` forwards
connections to the target; ``stop()`` closes the listener and every open connection
(the dependency looks gone: connections are refused); ``blackhole = True`` makes new
connections hang without an answer (the dependency looks stuck). ``proxy_to(url)``
and ``through(url, proxy)`` build a proxy for a service URL and the URL through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from tests.support.processes import free_port

logger = logging.getLogger(__name__)


class TcpProxy:
    """Forwards a loopback port to a target while the test lets it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on ``port`` and forward every new connection."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening and cut every connection that passes through."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Close the connections open now; new ones are still accepted."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        if self.blackhole:
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(target_writer)
        for source, sink in ((reader, target_writer), (target_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()


def proxy_to(url: str) -> TcpProxy:
    """A (not yet started) proxy in front of the host and port of ``url``."""
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0)


def through(url: str, proxy: TcpProxy) -> str:
    """``url`` with its host and port replaced by the proxy's loopback port."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace(
        f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}"
    )
    return parts._replace(netloc=netloc).geturl()
