"""The sync log at ten million rows: a record's rows found by its CW id or its ERP id (the console's
record timeline and search) without walking the client's rows. Partial indexes: only rows that name
the record that way.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def _where_set(column: str) -> dict[str, object]:
    condition = sa.text(f"{column} IS NOT NULL")
    return {f"{dialect}_where": condition for dialect in ("postgresql", "sqlite", "mssql")}


def upgrade() -> None:
    op.create_index("ix_sync_log_record", "sync_log", ["client_id", "cw_id"], **_where_set("cw_id"))
    op.create_index(
        "ix_sync_log_external", "sync_log", ["client_id", "external_id"], **_where_set("external_id")
    )


def downgrade() -> None:
    op.drop_index("ix_sync_log_external", table_name="sync_log")
    op.drop_index("ix_sync_log_record", table_name="sync_log")
