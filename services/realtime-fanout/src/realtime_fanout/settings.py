"""The fanout's settings, read once at start-up from the environment.

Every value has a local default; ``SHARDS`` is a JSON list of the shards this instance
owns (all of them when unset), ``AMQP_CONNECTION_NAME`` is the client-provided name
the broker shows for the consumer's connection (operators find it by that name).
``CONNECT_RETRY_MIN_S``/``CONNECT_RETRY_MAX_S`` bound the backoff between attempts to
attach the consumer while the broker has not answered since start.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Annotated

from checkin_events import DEFAULT_EXCHANGE, DEFAULT_SHARD_COUNT
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)


def _connection_name() -> str:
    return f"realtime-fanout-{socket.gethostname()}-{os.getpid()}"


class FanoutSettings(BaseSettings):
    """How the fanout listens, where it consumes from, and how much it buffers."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=1, le=65535)] = 8082
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_connection_name: str = Field(default_factory=_connection_name)
    events_exchange: str = DEFAULT_EXCHANGE
    shard_count: Annotated[int, Field(ge=1)] = DEFAULT_SHARD_COUNT
    shards: list[int] | None = None
    checkin_api_url: str = "http://127.0.0.1:8081"
    position_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    position_catch_up_s: Annotated[float, Field(ge=0)] = 0.25
    realtime_wait_s: Annotated[float, Field(gt=0, le=300)] = 25.0
    buffer_max_events: Annotated[int, Field(ge=1)] = 200
    buffer_ttl_s: Annotated[float, Field(gt=0)] = 25.0
    org_idle_evict_s: Annotated[float, Field(gt=0)] = 120.0
    gap_grace_s: Annotated[float, Field(gt=0)] = 1.0
    max_waiters_per_org: Annotated[int, Field(ge=1)] = 5000
    shutdown_grace_s: Annotated[float, Field(gt=0)] = 3.0
    sweep_interval_s: Annotated[float, Field(gt=0)] = 0.2
    listen_backlog: Annotated[int, Field(ge=1)] = 4096
    connect_retry_min_s: Annotated[float, Field(gt=0)] = 0.5
    connect_retry_max_s: Annotated[float, Field(gt=0)] = 10.0
    log_level: str = "INFO"

    def consumer_amqp_url(self) -> str:
        """The AMQP URL with the connection name the broker will show for us."""
        separator = "&" if "?" in self.amqp_url else "?"
        return f"{self.amqp_url}{separator}name={self.amqp_connection_name}"
