"""The outbox keeps the W3C trace context of the write that produced each event.

The relay publishes an event long after (or on another instance than) the request
that wrote it; with the context stored beside the event, the publish span and the
AMQP headers continue the request's trace instead of starting a new one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE outbox ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN trace_context")
