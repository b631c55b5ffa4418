"""The check-in API's configuration, read once at start-up from the environment."""

from __future__ import annotations

import logging
from typing import Annotated

from checkin_events import DEFAULT_EXCHANGE, DEFAULT_SHARD_COUNT
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)


class ApiSettings(BaseSettings):
    """Addresses, limits and timeouts of one check-in API process."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 8081
    database_url: str = "postgresql://postgres@127.0.0.1:5432/checkin"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    events_exchange: str = DEFAULT_EXCHANGE
    shard_count: Annotated[int, Field(ge=1)] = DEFAULT_SHARD_COUNT
    max_document_bytes: Annotated[int, Field(ge=1)] = 10 * 1024 * 1024
    local_mode: bool = False
    migrate_on_start: bool = True
    log_level: str = "INFO"

    db_connect_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    db_acquire_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    db_command_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    db_pool_min_size: Annotated[int, Field(ge=0)] = 1
    db_pool_max_size: Annotated[int, Field(ge=1)] = 10
    connect_retry_min_s: Annotated[float, Field(gt=0)] = 0.5
    connect_retry_max_s: Annotated[float, Field(gt=0)] = 10.0

    relay_sweep_s: Annotated[float, Field(gt=0)] = 5.0
    relay_batch_size: Annotated[int, Field(ge=1)] = 200
    relay_min_backoff_s: Annotated[float, Field(gt=0)] = 0.2
    relay_max_backoff_s: Annotated[float, Field(gt=0)] = 5.0
    publish_timeout_s: Annotated[float, Field(gt=0)] = 5.0
