"""Record-level consistency: per-record order keys on links, record leases, echo marks.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("record_links") as batch:
        batch.add_column(sa.Column("cw_sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cw_at", sa.DateTime(), nullable=True))
    op.create_table(
        "record_leases",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=3), nullable=False),
        sa.Column("record_key", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=36), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "provider", "entity", "side", "record_key"),
    )
    op.create_table(
        "echo_marks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=3), nullable=False),
        sa.Column("record_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_echo_marks_record", "echo_marks", ["client_id", "provider", "entity", "side", "record_key"]
    )
    op.create_index("ix_echo_marks_at", "echo_marks", ["at"])


def downgrade() -> None:
    op.drop_index("ix_echo_marks_at", table_name="echo_marks")
    op.drop_index("ix_echo_marks_record", table_name="echo_marks")
    op.drop_table("echo_marks")
    op.drop_table("record_leases")
    with op.batch_alter_table("record_links") as batch:
        batch.drop_column("cw_at")
        batch.drop_column("cw_sequence")
