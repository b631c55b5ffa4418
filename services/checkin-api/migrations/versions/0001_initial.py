"""The initial schema: org sequences, guest check-ins, documents and the outbox.

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
    op.execute(
        """
        CREATE TABLE org_sequences (
            org_id bigint PRIMARY KEY,
            last_seq bigint NOT NULL
        );

        CREATE TABLE guest_checkins (
            id bigserial PRIMARY KEY,
            org_id bigint NOT NULL,
            property_id bigint NOT NULL,
            full_name text NOT NULL,
            email text NOT NULL,
            phone text NOT NULL,
            address text NOT NULL,
            guest_type text NOT NULL
                CHECK (guest_type IN ('domestic', 'foreign')),
            nationality text NOT NULL,
            id_type text NOT NULL,
            id_number text NOT NULL,
            room_number text NOT NULL,
            number_of_guests integer NOT NULL CHECK (number_of_guests >= 1),
            check_in_date date NOT NULL,
            expected_checkout_date date NOT NULL,
            status text NOT NULL DEFAULT 'checked_in'
                CHECK (status IN ('checked_in', 'checked_out')),
            checked_out_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX guest_checkins_org_id ON guest_checkins (org_id, id);
        CREATE INDEX guest_checkins_org_property_id
            ON guest_checkins (org_id, property_id, id);

        CREATE TABLE guest_documents (
            id bigserial PRIMARY KEY,
            org_id bigint NOT NULL,
            checkin_id bigint NOT NULL
                REFERENCES guest_checkins (id) ON DELETE CASCADE,
            document_type text NOT NULL
                CHECK (document_type IN ('passport', 'id_card', 'visa', 'other')),
            content_type text NOT NULL,
            filename text,
            size_bytes integer NOT NULL,
            content bytea NOT NULL,
            extraction jsonb,
            extracted_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX guest_documents_checkin ON guest_documents (checkin_id, id);

        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            org_id bigint NOT NULL,
            seq bigint NOT NULL,
            event_type text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz,
            UNIQUE (org_id, seq)
        );
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_inserted', '');
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
            FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER outbox_inserted ON outbox;
        DROP FUNCTION outbox_notify();
        DROP TABLE outbox;
        DROP TABLE guest_documents;
        DROP TABLE guest_checkins;
        DROP TABLE org_sequences;
        """
    )
