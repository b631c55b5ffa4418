"""PostgreSQL access of telemetry-ingest: the ``telemetry.client_events`` table.

Rows are written in batches with COPY (one round trip per batch), summarised with a
few aggregate queries scoped to one org, and deleted by the retention job. The
table lives in the service's own schema, created by the migrations.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

SCHEMA = "telemetry"
TABLE = "client_events"
COLUMNS = ("org_id", "user_id", "type", "ts", "session_id", "tab_id", "attrs")

DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
"""What a database that is away, slow or restarting raises."""

REFUSED_ROW_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
"""What PostgreSQL raises for a row it will never take, however often it is sent."""


@dataclass(frozen=True)
class EventRow:
    """One accepted event as it is stored: scoped by the token's org and user."""

    org_id: int
    user_id: str
    type: str
    ts: datetime
    session_id: str
    tab_id: str
    attrs: dict[str, Any]

    def record(self) -> tuple[Any, ...]:
        """The row in the column order of ``COLUMNS``."""
        return (
            self.org_id,
            self.user_id,
            self.type,
            self.ts,
            self.session_id,
            self.tab_id,
            json.dumps(self.attrs),
        )


@dataclass(frozen=True)
class OrgTotals:
    """The raw figures the summary of one org is made of."""

    counts: dict[str, int]
    sessions: int
    fast_empty_sessions: int
    takeover_percentiles_ms: tuple[float | None, float | None, float | None]


class DatabaseNotReached(ConnectionError):
    """The database has not answered since the service started (not migrated yet)."""


class EventStore:
    """The service's connection pool and the queries it runs.

    The pool connects lazily, so the store exists while the database is away. It
    is ``reached`` once the service's migrations ran; until then every query
    raises ``DatabaseNotReached`` at once (one of ``DATABASE_ERRORS``).
    """

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._reached = asyncio.Event()

    @property
    def reached(self) -> bool:
        """True once the database answered and the schema was migrated."""
        return self._reached.is_set()

    def mark_reached(self) -> None:
        """The schema is migrated: queries may run from now on."""
        self._reached.set()

    async def wait_reached(self) -> None:
        """Return once ``mark_reached`` was called."""
        await self._reached.wait()

    def _ready_pool(self) -> asyncpg.Pool:
        if not self._reached.is_set():
            raise DatabaseNotReached(
                "the database has not answered since the service started"
            )
        return self._pool

    @classmethod
    async def open(cls, database_url: str, timeout_s: float) -> EventStore:
        """Open a small pool; connections retry lazily when the database is away."""
        pool = await asyncpg.create_pool(
            database_url,
            min_size=0,
            max_size=4,
            timeout=timeout_s,
            command_timeout=timeout_s,
        )
        return cls(pool, timeout_s)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()

    async def ping(self) -> None:
        """Raise unless the database answers within the timeout."""
        async with self._ready_pool().acquire(timeout=self._timeout_s) as connection:
            await connection.fetchval("SELECT 1", timeout=self._timeout_s)

    async def insert(self, rows: list[EventRow]) -> None:
        """Store the rows in one COPY; all of them or, on an error, none."""
        async with self._ready_pool().acquire(timeout=self._timeout_s) as connection:
            await connection.copy_records_to_table(
                TABLE,
                schema_name=SCHEMA,
                columns=COLUMNS,
                records=[row.record() for row in rows],
                timeout=self._timeout_s,
            )

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Delete events whose time is before ``cutoff``; returns how many."""
        async with self._ready_pool().acquire(timeout=self._timeout_s) as connection:
            status = await connection.execute(
                f"DELETE FROM {SCHEMA}.{TABLE} WHERE ts < $1", cutoff
            )
        return int(status.split()[-1])

    async def org_totals(self, org_id: int, since: datetime) -> OrgTotals:
        """Counts per type, sessions and takeover percentiles of one org."""
        async with self._ready_pool().acquire(timeout=self._timeout_s) as connection:
            by_type = await connection.fetch(
                f"SELECT type, count(*) AS n FROM {SCHEMA}.{TABLE}"
                " WHERE org_id = $1 AND ts >= $2 GROUP BY type",
                org_id,
                since,
            )
            sessions = await connection.fetchrow(
                "SELECT count(DISTINCT session_id) AS sessions,"
                " count(DISTINCT session_id) FILTER (WHERE type = 'fast_empty')"
                f" AS fast_empty_sessions FROM {SCHEMA}.{TABLE}"
                " WHERE org_id = $1 AND ts >= $2",
                org_id,
                since,
            )
            percentiles = await connection.fetchval(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
                " (ORDER BY (attrs->>'latencyMs')::double precision)"
                f" FROM {SCHEMA}.{TABLE} WHERE org_id = $1 AND ts >= $2"
                " AND type = 'leader_takeover'"
                " AND jsonb_typeof(attrs->'latencyMs') = 'number'",
                org_id,
                since,
            )
        p50, p95, p99 = percentiles if percentiles is not None else (None,) * 3
        return OrgTotals(
            counts={record["type"]: record["n"] for record in by_type},
            sessions=sessions["sessions"] if sessions else 0,
            fast_empty_sessions=sessions["fast_empty_sessions"] if sessions else 0,
            takeover_percentiles_ms=(p50, p95, p99),
        )
