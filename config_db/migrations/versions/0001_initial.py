"""Initial schema: clients, provider connections, sync log, record links, inbox, local bus.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "bus_messages",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("body", sa.UnicodeText(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("enqueued_at", sa.BigInteger(), nullable=False),
        sa.Column("visible_at", sa.BigInteger(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.Column("lock_token", sa.String(length=36), nullable=True),
        sa.Column("delivery_count", sa.Integer(), nullable=False),
        sa.Column("dead_letter_reason", sa.String(length=64), nullable=True),
        sa.Column("dead_letter_description", sa.UnicodeText(), nullable=True),
        sa.Column("dead_lettered_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_bus_ready", "bus_messages", ["queue", "state", "visible_at", "seq"], unique=False)
    op.create_index("ix_bus_session", "bus_messages", ["queue", "session_id", "state", "seq"], unique=False)
    op.create_index(
        "ix_bus_session_lock", "bus_messages", ["queue", "session_id", "locked_until"], unique=False
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "inbox",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "message_id"),
    )
    op.create_table(
        "record_links",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("cw_id", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "provider", "entity", "cw_id"),
    )
    op.create_index(
        "ix_record_links_external",
        "record_links",
        ["client_id", "provider", "entity", "external_id"],
        unique=False,
    )
    op.create_table(
        "sync_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=True),
        sa.Column("cw_id", sa.String(length=255), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.UnicodeText(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_log_client_at", "sync_log", ["client_id", "id"], unique=False)
    op.create_index("ix_sync_log_message", "sync_log", ["message_id", "client_id", "id"], unique=False)
    op.create_table(
        "provider_connections",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("base_url", sa.String(length=1024), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id"),
    )


def downgrade() -> None:
    op.drop_table("provider_connections")
    op.drop_index("ix_sync_log_message", table_name="sync_log")
    op.drop_index("ix_sync_log_client_at", table_name="sync_log")
    op.drop_table("sync_log")
    op.drop_index("ix_record_links_external", table_name="record_links")
    op.drop_table("record_links")
    op.drop_table("inbox")
    op.drop_table("clients")
    op.drop_index("ix_bus_session_lock", table_name="bus_messages")
    op.drop_index("ix_bus_session", table_name="bus_messages")
    op.drop_index("ix_bus_ready", table_name="bus_messages")
    op.drop_table("bus_messages")
