"""Record values without their (client_id, name) index.

The console finds a record by a part of its name (``ILIKE '%…%'``), which no B-tree index can serve
on any of our databases; the index only cost every completed write its upkeep (about a tenth of the
worker's CPU a message at latency 0, `cwi bench`, 2026-12-06). The search reads the client's rows
through ``ix_record_values_record``, whose first column is the client.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.drop_index("ix_record_values_name", table_name="record_values")


def downgrade() -> None:
    op.create_index("ix_record_values_name", "record_values", ["client_id", "name"])
