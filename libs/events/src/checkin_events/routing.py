"""Routing keys and the topic exchange the events travel through.

A routing key is ``<shard>.<orgId>.<propertyId>.<eventType>``. The shard comes first
so that a fanout instance binds ``<shard>.#`` for each shard it owns and receives
exactly the orgs of those shards; the org and property follow so that narrower
bindings (one org, one property) are possible too.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

DEFAULT_EXCHANGE = "guest-checkin.events"
DEFAULT_SHARD_COUNT = 16


def shard_for(org_id: int, shard_count: int = DEFAULT_SHARD_COUNT) -> int:
    """The shard that owns an org: stable, cheap, and computable by a gateway."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    return org_id % shard_count


def routing_key(
    org_id: int,
    property_id: int,
    event_type: str,
    shard_count: int = DEFAULT_SHARD_COUNT,
) -> str:
    """The routing key of one event: shard and org first, then property and type."""
    return f"{shard_for(org_id, shard_count)}.{org_id}.{property_id}.{event_type}"


def shard_bindings(shards: list[int] | None, shard_count: int) -> list[str]:
    """Binding keys for the given shards, or for every message when ``None``."""
    if shards is None:
        return ["#"]
    for shard in shards:
        if not 0 <= shard < shard_count:
            raise ValueError(f"shard {shard} is outside 0..{shard_count - 1}")
    return [f"{shard}.#" for shard in sorted(set(shards))]


async def declare_exchange(
    channel: AbstractChannel, name: str = DEFAULT_EXCHANGE
) -> AbstractExchange:
    """Declare the durable topic exchange; declaring it again changes nothing."""
    return await channel.declare_exchange(
        name, aio_pika.ExchangeType.TOPIC, durable=True
    )
