"""Reconciliation: sync anchors per client and entity, and the scheduler's per-client lease.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "reconcile_anchors",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("cw_anchor", sa.String(length=600), nullable=True),
        sa.Column("erp_anchor", sa.String(length=600), nullable=True),
        sa.Column("full_at", sa.DateTime(), nullable=True),
        sa.Column("pending", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "entity"),
    )
    op.create_table(
        "reconcile_runs",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("until", sa.BigInteger(), nullable=True),
        sa.Column("last_run_at", sa.DateTime(), nullable=True),
        sa.Column("last_outcome", sa.UnicodeText(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", "job"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_runs")
    op.drop_table("reconcile_anchors")
