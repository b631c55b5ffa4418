"""Create telemetry.client_events, the accepted browser telemetry.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One row per accepted event; the org and user come from the token."""
    op.execute(
        """
        CREATE TABLE telemetry.client_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            org_id bigint NOT NULL,
            user_id text NOT NULL,
            type text NOT NULL,
            ts timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            session_id text NOT NULL,
            tab_id text NOT NULL,
            attrs jsonb NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute(
        "CREATE INDEX client_events_org_ts ON telemetry.client_events (org_id, ts)"
    )
    op.execute("CREATE INDEX client_events_ts ON telemetry.client_events (ts)")


def downgrade() -> None:
    """Drop the table and everything it held."""
    op.execute("DROP TABLE telemetry.client_events")
