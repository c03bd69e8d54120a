"""The tables of the record's lease and of the echo marks; re-exported by ``config_db.models``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from config_db.models_base import Base, UtcDateTime, utcnow


class RecordLease(Base):
    """Who is working on a record right now: one message at a time per record, across processes.

    ``side`` says what ``record_key`` is: ``cw`` (a CW id) or ``erp`` (an ERP's external id, for a
    change about a record not linked yet). ``holder`` is the transport message id: a redelivery of
    the same message (its earlier holder lost the lock) takes the lease over at once. The row exists
    only while the lease is held; ``until`` (epoch ms) bounds a holder that died.
    """

    __tablename__ = "record_leases"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    side: Mapped[str] = mapped_column(String(3), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(36))
    until: Mapped[int] = mapped_column(BigInteger)


class EchoMark(Base):
    """Something we wrote, remembered for a window so that its echo is recognised.

    ``side`` ``erp``: a version or content hash we wrote to (or applied from) the ERP record
    ``record_key`` (its external id), or a ``tombstone`` of our own delete. ``side`` ``cw``: the
    ``fingerprint`` of CW fields our inbound write put into CW record ``record_key`` (its CW id);
    consumed when its CW event comes back.
    """

    __tablename__ = "echo_marks"
    __table_args__ = (Index("ix_echo_marks_record", "client_id", "provider", "entity", "side", "record_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(3))
    record_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
