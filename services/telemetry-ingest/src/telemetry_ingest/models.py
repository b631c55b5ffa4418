"""The telemetry a browser sends: a batch of small, typed events.

Each event says what the realtime layer did in one tab of one sampled session
(``fast_empty``, ``leader_takeover``, …) with a few typed ``attrs`` such as durations
and counts. Everything is bounded (keys, lengths, numbers) so that a batch cannot
carry free text or personal data, and a batch cannot grow the table without limit.
The org and the user are never part of the body: they come from the token.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

logger = logging.getLogger(__name__)

MAX_ATTRS = 16
MAX_ATTR_STRING = 64


class EventType(StrEnum):
    """The kinds of client event the browser reports."""

    FAST_EMPTY = "fast_empty"
    LEADER_ACQUIRED = "leader_acquired"
    LEADER_TAKEOVER = "leader_takeover"
    LEADER_LOST = "leader_lost"
    POLL_ERROR = "poll_error"
    RESYNC = "resync"
    LOGOUT_PROPAGATED = "logout_propagated"


ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
AttrKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]
AttrValue = (
    StrictBool
    | Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]
    | Annotated[StrictFloat, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
    | Annotated[
        str, StringConstraints(max_length=MAX_ATTR_STRING, pattern=r"^[^\x00-\x1f]*$")
    ]
)


class ClientEvent(BaseModel):
    """One thing the realtime layer did in a browser tab."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: EventType
    ts: AwareDatetime
    session_id: ClientId = Field(alias="sessionId")
    tab_id: ClientId = Field(alias="tabId")
    attrs: Annotated[dict[AttrKey, AttrValue], Field(max_length=MAX_ATTRS)] = Field(
        default_factory=dict
    )


class TelemetryBatch(BaseModel):
    """What ``POST /telemetry/client`` carries: ``{"events": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[ClientEvent], Field(min_length=1)]


def timestamp_problems(
    batch: TelemetryBatch, now: datetime, max_age: timedelta, max_ahead: timedelta
) -> list[dict[str, str]]:
    """Events whose ``ts`` is older than retention or too far in the future.

    Such events would be deleted at once or skew every summary, so the batch that
    carries them is refused as a whole, with one reason per event.
    """
    problems: list[dict[str, str]] = []
    for index, event in enumerate(batch.events):
        if event.ts < now - max_age:
            reason = "older than the retention period"
        elif event.ts > now + max_ahead:
            reason = "too far in the future"
        else:
            continue
        problems.append({"field": f"events.{index}.ts", "reason": reason})
    return problems


class Summary(BaseModel):
    """What an org's telemetry says since a moment, for ``GET /telemetry/summary``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    org_id: int = Field(alias="orgId")
    since: datetime
    counts: dict[str, int]
    sessions: int
    fast_empty_rate: float | None = Field(alias="fastEmptyRate")
    takeover_latency_ms: dict[str, float | None] = Field(alias="takeoverLatencyMs")
