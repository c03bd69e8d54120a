"""The local bus's table (its messages, active and dead-lettered); re-exported by ``config_db.models``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, UnicodeText
from sqlalchemy.orm import Mapped, mapped_column

from config_db.models_base import Base


class BusMessage(Base):
    """The local bus: one row per message, in the active queue or dead-lettered.

    Times are epoch milliseconds. A completed message is deleted. ``session_id`` (the client id)
    orders a client's messages: one at a time, in ``seq`` order.
    """

    __tablename__ = "bus_messages"
    __table_args__ = (
        Index("ix_bus_ready", "queue", "state", "visible_at", "seq"),
        Index("ix_bus_session", "queue", "session_id", "state", "seq"),
        # "is any message of this session locked?" is a seek instead of a walk of the session.
        Index("ix_bus_session_lock", "queue", "session_id", "locked_until"),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(128), unique=True)
    session_id: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(UnicodeText)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="active")
    enqueued_at: Mapped[int] = mapped_column(BigInteger)
    visible_at: Mapped[int] = mapped_column(BigInteger)
    locked_until: Mapped[int | None] = mapped_column(BigInteger)
    lock_token: Mapped[str | None] = mapped_column(String(36))
    delivery_count: Mapped[int] = mapped_column(Integer, default=0)
    dead_letter_reason: Mapped[str | None] = mapped_column(String(64))
    dead_letter_description: Mapped[str | None] = mapped_column(UnicodeText)
    dead_lettered_at: Mapped[int | None] = mapped_column(BigInteger)
