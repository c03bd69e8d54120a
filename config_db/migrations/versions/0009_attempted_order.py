"""A push's order key on its intent row, and the failures found without walking the sync log.

``cw_sequence`` and ``cw_at`` on ``pending`` rows: the order key of the CW event being pushed, so
that a push left in doubt by a worker that died stays visible once its lease ran out (an older
event of the record is then superseded, not pushed over it). ``ix_sync_log_failures``: the last
failure of each connection (``cwi status``, the console's overview) read from the few failure rows.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

_FAILURES = "action IN ('failed', 'retry')"


def upgrade() -> None:
    with op.batch_alter_table("sync_log") as batch:
        batch.add_column(sa.Column("cw_sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cw_at", sa.DateTime(), nullable=True))
    where = {f"{dialect}_where": sa.text(_FAILURES) for dialect in ("postgresql", "sqlite", "mssql")}
    op.create_index("ix_sync_log_failures", "sync_log", ["client_id", "provider", "id"], **where)


def downgrade() -> None:
    op.drop_index("ix_sync_log_failures", table_name="sync_log")
    with op.batch_alter_table("sync_log") as batch:
        batch.drop_column("cw_at")
        batch.drop_column("cw_sequence")
