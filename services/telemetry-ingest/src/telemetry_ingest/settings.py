"""Settings of telemetry-ingest, read once from the environment at start-up.

The names are the plain environment variables (``PORT``, ``DATABASE_URL``, …) listed
in the service's README; ``CORS_ORIGINS`` is a JSON list of allowed browser origins.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/checkin"


class TelemetrySettings(BaseSettings):
    """Everything the service needs to run; one instance per process."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8083
    database_url: str = DEFAULT_DATABASE_URL
    log_level: str = "INFO"

    max_body_bytes: Annotated[int, Field(ge=1024)] = 65536
    max_events_per_batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 60
    rate_limit_per_ip_per_minute: Annotated[int, Field(ge=1)] = 600
    trust_forwarded_for: bool = False

    queue_max: Annotated[int, Field(ge=1)] = 10_000
    flush_interval_s: Annotated[float, Field(gt=0)] = 1.0
    flush_batch_max: Annotated[int, Field(ge=1)] = 1000
    database_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    shutdown_flush_timeout_s: Annotated[float, Field(ge=0)] = 10.0
    connect_retry_min_s: Annotated[float, Field(gt=0)] = 0.5
    connect_retry_max_s: Annotated[float, Field(gt=0)] = 10.0

    retention_days: Annotated[int, Field(ge=1)] = 30
    retention_interval_s: Annotated[float, Field(gt=0)] = 3600.0

    cors_origins: list[str] = ["http://127.0.0.1:8080", "http://localhost:8080"]
