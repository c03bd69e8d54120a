"""Inbound: record links remember the fingerprint of the CW fields our inbound write put into CW.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("record_links") as batch:
        batch.add_column(sa.Column("cw_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("record_links") as batch:
        batch.drop_column("cw_fingerprint")
