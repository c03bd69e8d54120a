"""The local bus's table (its messages, active and dead-lettered); re-exported by ``config_db.models``."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, String, Table, UnicodeText

from config_db.models_base import metadata

# The local bus: one row per message, in the active queue or dead-lettered.
#
# Times are epoch milliseconds. A completed message is deleted. ``session_id`` (the client id)
# orders a client's messages: one at a time, in ``seq`` order.
bus_messages = Table(
    "bus_messages",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("queue", String(64), nullable=False),
    Column("message_id", String(128), unique=True, nullable=False),
    Column("session_id", String(64)),
    Column("body", UnicodeText, nullable=False),
    Column("properties", JSON, default=dict, nullable=False),
    Column("state", String(16), default="active", nullable=False),
    Column("enqueued_at", BigInteger, nullable=False),
    Column("visible_at", BigInteger, nullable=False),
    Column("locked_until", BigInteger),
    Column("lock_token", String(36)),
    Column("delivery_count", Integer, default=0, nullable=False),
    Column("dead_letter_reason", String(64)),
    Column("dead_letter_description", UnicodeText),
    Column("dead_lettered_at", BigInteger),
    Index("ix_bus_ready", "queue", "state", "visible_at", "seq"),
    Index("ix_bus_session", "queue", "session_id", "state", "seq"),
    # "is any message of this session locked?" is a seek instead of a walk of the session.
    Index("ix_bus_session_lock", "queue", "session_id", "locked_until"),
)
