"""The tables of the record's lease and of the echo marks; re-exported by ``config_db.models``."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from config_db.models_base import UtcDateTime, metadata, utcnow

# Who is working on a record right now: one message at a time per record, across processes.
#
# ``side`` says what ``record_key`` is: ``cw`` (a CW id) or ``erp`` (an ERP's external id, for a
# change about a record not linked yet). ``holder`` is the transport message id: a redelivery of
# the same message (its earlier holder lost the lock) takes the lease over at once. The row exists
# only while the lease is held; ``until`` (epoch ms) bounds a holder that died.
record_leases = Table(
    "record_leases",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("provider", String(32), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("side", String(3), primary_key=True),
    Column("record_key", String(255), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("owner", String(36), nullable=False),
    Column("until", BigInteger, nullable=False),
)


# Something we wrote, remembered for a window so that its echo is recognised.
#
# ``side`` ``erp``: a version or content hash we wrote to (or applied from) the ERP record
# ``record_key`` (its external id), or a ``tombstone`` of our own delete. ``side`` ``cw``: the
# ``fingerprint`` of CW fields our inbound write put into CW record ``record_key`` (its CW id);
# consumed when its CW event comes back.
echo_marks = Table(
    "echo_marks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("side", String(3), nullable=False),
    Column("record_key", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", String(64), nullable=False),
    Column("at", UtcDateTime, default=utcnow, index=True, nullable=False),
    Index("ix_echo_marks_record", "client_id", "provider", "entity", "side", "record_key"),
)
