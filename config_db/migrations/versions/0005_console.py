"""The operator console: provider definitions (generic REST integrators) and the record values.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "provider_definitions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.UnicodeText(), nullable=False),
        sa.Column("base_url_template", sa.String(length=1024), nullable=False),
        sa.Column("auth_scheme", sa.String(length=32), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("webhook_signing", sa.String(length=32), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("validated_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "record_values",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("cw_id", sa.String(length=255), nullable=False),
        sa.Column("number", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("data", sa.UnicodeText(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_record_values_record", "record_values", ["client_id", "entity", "cw_id", "id"])
    op.create_index("ix_record_values_number", "record_values", ["client_id", "number"])
    op.create_index("ix_record_values_name", "record_values", ["client_id", "name"])


def downgrade() -> None:
    op.drop_index("ix_record_values_name", table_name="record_values")
    op.drop_index("ix_record_values_number", table_name="record_values")
    op.drop_index("ix_record_values_record", table_name="record_values")
    op.drop_table("record_values")
    op.drop_table("provider_definitions")
