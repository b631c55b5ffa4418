"""Reading the check-in API's outbox from a test: how many events are not yet sent."""

from __future__ import annotations

import asyncpg


async def unpublished(database_url: str) -> int:
    """Outbox rows the relay has not yet marked as confirmed by the broker."""
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
        )
    finally:
        await connection.close()


async def none_unpublished(database_url: str) -> bool:
    """True once the relay has sent every outbox row."""
    return await unpublished(database_url) == 0
