"""Guest check-ins and their documents in PostgreSQL (asyncpg).

Every write is one transaction: the change, the org's next ``seq`` and the outbox
row of its event (see ``outbox``). Reads of a page and of the org's position share
one REPEATABLE READ snapshot, so ``position`` is exactly the state the page shows.
A row of another org, or of a property the user may not see, is "not found".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checkin_events import (
    GuestCheckedOut,
    GuestCreated,
    GuestDeleted,
    GuestDocumentExtracted,
    GuestDocumentUploaded,
    GuestEvent,
    GuestUpdated,
)
from checkin_events.models import (
    GuestDocumentExtractedMetadata,
    GuestDocumentUploadedMetadata,
    GuestUpdatedMetadata,
)
from pydantic.alias_generators import to_camel

from checkin_api import metrics
from checkin_api.domain import (
    AlreadyCheckedOut,
    CheckinChanges,
    CheckinInput,
    CheckinNotFound,
    CheckinPage,
    DocumentContentType,
    DocumentNotFound,
    DocumentType,
    ExtractionInput,
    GuestCheckin,
    GuestDocument,
    Scope,
    check_dates,
)
from checkin_api.outbox import append_event, insert_with_event

logger = logging.getLogger(__name__)

_CHECKIN_FIELDS = """
    c.id, c.org_id, c.property_id, c.full_name, c.email, c.phone, c.address,
    c.guest_type, c.nationality, c.id_type, c.id_number, c.room_number,
    c.number_of_guests, c.check_in_date, c.expected_checkout_date, c.status,
    c.checked_out_at, c.created_at, c.updated_at"""

_CHECKIN_COLUMNS = f"""{_CHECKIN_FIELDS},
    (SELECT count(*) FROM guest_documents d WHERE d.checkin_id = c.id)
        AS document_count
"""

_DOCUMENT_COLUMNS = """
    id, checkin_id, document_type, content_type, filename, size_bytes, created_at,
    extraction, extracted_at
"""

_EDITABLE = (
    "full_name",
    "email",
    "phone",
    "address",
    "guest_type",
    "nationality",
    "id_type",
    "id_number",
    "room_number",
    "number_of_guests",
    "check_in_date",
    "expected_checkout_date",
)


@dataclass(frozen=True)
class PageRequest:
    """Which records a list asks for; ``before_id`` is the decoded cursor."""

    property_id: int | None
    status: str | None
    limit: int
    before_id: int | None


def _checkin(row: Any) -> GuestCheckin:
    return GuestCheckin.model_validate(dict(row))


def _document(row: Any) -> GuestDocument:
    values = dict(row)
    if values["extraction"] is not None:
        values["extraction"] = json.loads(values["extraction"])
    return GuestDocument.model_validate(values)


class DatabaseNotReached(ConnectionError):
    """The database has not answered since the service started (no pool yet)."""


class CheckinStore:
    """The check-in records of every org, read and written for one ``Scope``.

    The store exists from the start; its pool is attached once the database has
    answered and the schema is migrated. Until then every call raises
    ``DatabaseNotReached`` at once (a ``ConnectionError``, so it is answered like
    a database that went away).
    """

    def __init__(self, pool: Any | None, acquire_timeout_s: float) -> None:
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._attached = asyncio.Event()
        if pool is not None:
            self._attached.set()

    @property
    def attached(self) -> bool:
        """True once the pool is there (the database answered and was migrated)."""
        return self._pool is not None

    def attach(self, pool: Any) -> None:
        """Use ``pool`` from now on."""
        self._pool = pool
        self._attached.set()

    async def wait_attached(self) -> None:
        """Return once the pool is attached."""
        await self._attached.wait()

    def _ready_pool(self) -> Any:
        if self._pool is None:
            raise DatabaseNotReached(
                "the database has not answered since the service started"
            )
        return self._pool

    @asynccontextmanager
    async def _transaction(
        self, isolation: str = "read_committed", readonly: bool = False
    ) -> AsyncIterator[Any]:
        async with (
            self._ready_pool().acquire(timeout=self._acquire_timeout_s) as connection,
            connection.transaction(isolation=isolation, readonly=readonly),
        ):
            yield connection

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        pool = self._ready_pool()
        async with pool.acquire(timeout=self._acquire_timeout_s) as connection:
            await connection.fetchval("SELECT 1")

    # --- reads ------------------------------------------------------------------

    async def position(self, scope: Scope) -> int:
        """The org's current event sequence number (0 before any event)."""
        async with self._transaction(readonly=True) as connection:
            return await _position(connection, scope.org_id)

    async def list_page(self, scope: Scope, page: PageRequest) -> CheckinPage:
        """A page of records, newest first, and the position of the same snapshot."""
        conditions = ["c.org_id = $1"]
        arguments: list[Any] = [scope.org_id]
        if page.property_id is not None:
            arguments.append(page.property_id)
            conditions.append(f"c.property_id = ${len(arguments)}")
        if scope.property_ids is not None:
            arguments.append(sorted(scope.property_ids))
            conditions.append(f"c.property_id = ANY(${len(arguments)}::bigint[])")
        if page.status is not None:
            arguments.append(page.status)
            conditions.append(f"c.status = ${len(arguments)}")
        if page.before_id is not None:
            arguments.append(page.before_id)
            conditions.append(f"c.id < ${len(arguments)}")
        arguments.append(page.limit + 1)
        query = (
            f"SELECT {_CHECKIN_COLUMNS} FROM guest_checkins c "
            f"WHERE {' AND '.join(conditions)} "
            f"ORDER BY c.id DESC LIMIT ${len(arguments)}"
        )
        async with self._transaction("repeatable_read", readonly=True) as connection:
            rows = await connection.fetch(query, *arguments)
            position = await _position(connection, scope.org_id)
        items = [_checkin(row) for row in rows[: page.limit]]
        next_cursor = str(items[-1].id) if len(rows) > page.limit else None
        return CheckinPage(items=items, position=position, next_cursor=next_cursor)

    async def get(self, scope: Scope, checkin_id: int) -> GuestCheckin:
        """One record the user may see, or ``CheckinNotFound``."""
        async with self._transaction(readonly=True) as connection:
            return await _visible_checkin(connection, scope, checkin_id)

    async def list_documents(
        self, scope: Scope, checkin_id: int
    ) -> list[GuestDocument]:
        """The documents of a record the user may see, oldest first."""
        async with self._transaction(readonly=True) as connection:
            await _visible_checkin(connection, scope, checkin_id)
            rows = await connection.fetch(
                f"SELECT {_DOCUMENT_COLUMNS} FROM guest_documents "
                "WHERE checkin_id = $1 ORDER BY id",
                checkin_id,
            )
        return [_document(row) for row in rows]

    async def read_document(
        self, scope: Scope, checkin_id: int, document_id: int
    ) -> tuple[GuestDocument, bytes]:
        """A document and its bytes, for download."""
        async with self._transaction(readonly=True) as connection:
            await _visible_checkin(connection, scope, checkin_id)
            row = await connection.fetchrow(
                f"SELECT {_DOCUMENT_COLUMNS}, content FROM guest_documents "
                "WHERE id = $1 AND checkin_id = $2",
                document_id,
                checkin_id,
            )
        if row is None:
            raise DocumentNotFound(f"document {document_id} not found")
        values = dict(row)
        content = bytes(values.pop("content"))
        return _document(values), content

    # --- writes -----------------------------------------------------------------

    async def check_in(self, scope: Scope, data: CheckinInput) -> GuestCheckin:
        """Create the record of a guest checking in; emits ``guest_created``.

        The record, the org's next ``seq`` and the outbox row are written by one
        statement (``insert_with_event``): one round trip to the database.
        """
        values = data.model_dump()
        columns = list(values)
        placeholders = ", ".join(f"${index + 2}" for index in range(len(columns)))
        draft = GuestCreated(
            org_id=scope.org_id,
            property_id=data.property_id,
            seq=1,  # placeholders: the statement stores the real seq and id
            entity_id=1,
            actor_user_id=scope.user_id,
        )
        pool = self._ready_pool()
        async with pool.acquire(timeout=self._acquire_timeout_s) as connection:
            row = await insert_with_event(
                connection,
                f"INSERT INTO guest_checkins AS c (org_id, {', '.join(columns)}) "
                f"VALUES ($1, {placeholders}) RETURNING {_CHECKIN_FIELDS}, "
                "0 AS document_count",
                [scope.org_id, *values.values()],
                draft,
            )
        values = dict(row)
        values.pop("seq")
        record = GuestCheckin.model_validate(values)
        metrics.WRITES.labels("guest_created").inc()
        logger.info("guest checked in org_id=%s checkin_id=%s", scope.org_id, record.id)
        return record

    async def update(
        self, scope: Scope, checkin_id: int, changes: CheckinChanges
    ) -> GuestCheckin:
        """Change fields of a record; emits ``guest_updated`` naming the fields.

        Fields sent with their current value are no change: when nothing changes,
        the record is answered as it is and no event is emitted.
        """
        async with self._transaction() as connection:
            record = await _visible_checkin(connection, scope, checkin_id, lock=True)
            changed = {
                name: value
                for name, value in changes.given().items()
                if getattr(record, name) != value
            }
            check_dates(
                changed.get("check_in_date", record.check_in_date),
                changed.get("expected_checkout_date", record.expected_checkout_date),
            )
            if not changed:
                return record
            assignments = ", ".join(
                f"{name} = ${index + 2}" for index, name in enumerate(changed)
            )
            await connection.execute(
                f"UPDATE guest_checkins SET {assignments}, updated_at = now() "
                "WHERE id = $1",
                checkin_id,
                *changed.values(),
            )
            updated = await _visible_checkin(connection, scope, checkin_id)
            fields = sorted(to_camel(name) for name in changed)
            await self._emit(
                connection,
                scope,
                updated,
                lambda seq: GuestUpdated(
                    **_envelope(scope, updated, seq),
                    metadata=GuestUpdatedMetadata(changed_fields=fields),
                ),
            )
        metrics.WRITES.labels("guest_updated").inc()
        return updated

    async def check_out(self, scope: Scope, checkin_id: int) -> GuestCheckin:
        """Check a guest out; ``AlreadyCheckedOut`` the second time."""
        async with self._transaction() as connection:
            record = await _visible_checkin(connection, scope, checkin_id, lock=True)
            if record.status == "checked_out":
                raise AlreadyCheckedOut(f"guest check-in {checkin_id} is checked out")
            await connection.execute(
                "UPDATE guest_checkins SET status = 'checked_out', "
                "checked_out_at = now(), updated_at = now() WHERE id = $1",
                checkin_id,
            )
            updated = await _visible_checkin(connection, scope, checkin_id)
            await self._emit(
                connection,
                scope,
                updated,
                lambda seq: GuestCheckedOut(**_envelope(scope, updated, seq)),
            )
        metrics.WRITES.labels("guest_checked_out").inc()
        return updated

    async def delete(self, scope: Scope, checkin_id: int) -> None:
        """Delete a record and its documents; emits ``guest_deleted``."""
        async with self._transaction() as connection:
            record = await _visible_checkin(connection, scope, checkin_id, lock=True)
            await connection.execute(
                "DELETE FROM guest_checkins WHERE id = $1", checkin_id
            )
            await self._emit(
                connection,
                scope,
                record,
                lambda seq: GuestDeleted(**_envelope(scope, record, seq)),
            )
        metrics.WRITES.labels("guest_deleted").inc()

    async def add_document(
        self,
        scope: Scope,
        checkin_id: int,
        document_type: DocumentType,
        content_type: DocumentContentType,
        filename: str | None,
        content: bytes,
    ) -> GuestDocument:
        """Store an identity document with its record; emits the upload event."""
        async with self._transaction() as connection:
            record = await _visible_checkin(connection, scope, checkin_id, lock=True)
            row = await connection.fetchrow(
                "INSERT INTO guest_documents (org_id, checkin_id, document_type, "
                "content_type, filename, size_bytes, content) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_DOCUMENT_COLUMNS}",
                scope.org_id,
                checkin_id,
                document_type,
                content_type,
                filename,
                len(content),
                content,
            )
            document = _document(row)
            await connection.execute(
                "UPDATE guest_checkins SET updated_at = now() WHERE id = $1",
                checkin_id,
            )
            await self._emit(
                connection,
                scope,
                record,
                lambda seq: GuestDocumentUploaded(
                    **_envelope(scope, record, seq),
                    metadata=GuestDocumentUploadedMetadata(
                        document_id=document.id,
                        document_type=document_type,
                        content_type=content_type,
                    ),
                ),
            )
        metrics.WRITES.labels("guest_document_uploaded").inc()
        return document

    async def record_extraction(
        self,
        scope: Scope,
        checkin_id: int,
        document_id: int,
        extraction: ExtractionInput,
    ) -> GuestDocument:
        """Store the extracted fields of a document; emits the extraction event."""
        async with self._transaction() as connection:
            record = await _visible_checkin(connection, scope, checkin_id, lock=True)
            row = await connection.fetchrow(
                "UPDATE guest_documents SET extraction = $3::jsonb, "
                "extracted_at = now() WHERE id = $1 AND checkin_id = $2 "
                f"RETURNING {_DOCUMENT_COLUMNS}",
                document_id,
                checkin_id,
                extraction.model_dump_json(exclude_none=True),
            )
            if row is None:
                raise DocumentNotFound(f"document {document_id} not found")
            document = _document(row)
            await self._emit(
                connection,
                scope,
                record,
                lambda seq: GuestDocumentExtracted(
                    **_envelope(scope, record, seq),
                    metadata=GuestDocumentExtractedMetadata(
                        document_id=document_id,
                        extracted_fields=extraction.extracted_fields(),
                        confidence=extraction.confidence,
                    ),
                ),
            )
        metrics.WRITES.labels("guest_document_extracted").inc()
        return document

    async def _emit(
        self,
        connection: Any,
        scope: Scope,
        record: GuestCheckin,
        build: Callable[[int], GuestEvent],
    ) -> None:
        await append_event(connection, scope.org_id, build)


def _envelope(scope: Scope, record: GuestCheckin, seq: int) -> dict[str, Any]:
    return {
        "org_id": scope.org_id,
        "property_id": record.property_id,
        "seq": seq,
        "entity_id": record.id,
        "actor_user_id": scope.user_id,
        "timestamp": datetime.now(UTC),
    }


async def _position(connection: Any, org_id: int) -> int:
    value = await connection.fetchval(
        "SELECT last_seq FROM org_sequences WHERE org_id = $1", org_id
    )
    return int(value or 0)


async def _visible_checkin(
    connection: Any, scope: Scope, checkin_id: int, lock: bool = False
) -> GuestCheckin:
    if lock:
        await connection.execute(
            "SELECT 1 FROM guest_checkins WHERE id = $1 AND org_id = $2 FOR UPDATE",
            checkin_id,
            scope.org_id,
        )
    row = await connection.fetchrow(
        f"SELECT {_CHECKIN_COLUMNS} FROM guest_checkins c "
        "WHERE c.id = $1 AND c.org_id = $2",
        checkin_id,
        scope.org_id,
    )
    if row is None or not scope.may_see(row["property_id"]):
        raise CheckinNotFound(f"guest check-in {checkin_id} not found")
    return _checkin(row)
