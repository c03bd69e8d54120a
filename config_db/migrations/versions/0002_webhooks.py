"""Webhooks: endpoint tokens (hashed) per connection, and receipts of vendor deliveries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_webhook_endpoints_client", "webhook_endpoints", ["client_id"], unique=False)
    op.create_table(
        "webhook_receipts",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("delivery_key", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "provider", "delivery_key"),
    )


def downgrade() -> None:
    op.drop_table("webhook_receipts")
    op.drop_index("ix_webhook_endpoints_client", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
