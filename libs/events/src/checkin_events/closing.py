"""Closing a broker connection without waiting forever.

A robust connection that is reconnecting when it is asked to close can take as long
as the broker stays away; a service stopping (or a test tearing down) must not wait
for that. After the deadline the connection is abandoned with a warning.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractConnection

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0


async def close_within(connection: AbstractConnection, timeout_s: float) -> None:
    """Close the connection, giving up after ``timeout_s`` seconds."""
    try:
        await asyncio.wait_for(connection.close(), timeout=timeout_s)
    except TimeoutError:
        logger.warning("broker connection did not close within %.1fs", timeout_s)
