"""The configuration database's tables (SQLAlchemy 2 typed models).

Portable across SQLite, PostgreSQL and SQL Server: every indexed string has a length, JSON is
stored through SQLAlchemy's JSON type, and bus timestamps are epoch milliseconds so that lock and
visibility comparisons are plain integer comparisons on every dialect. The local bus's table
(``models_bus``) and the leases' and echo marks' (``models_marks``) live in their own modules and are
re-exported here: ``from config_db.models import X`` works for every model.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UnicodeText,
)
from sqlalchemy.orm import Mapped, mapped_column

from config_db.models_base import Base, UtcDateTime, partial_index, table_of, utcnow
from config_db.models_bus import BusMessage
from config_db.models_marks import EchoMark, RecordLease

__all__ = [
    "TABLES",
    "Base",
    "BusMessage",
    "Client",
    "EchoMark",
    "InboxEntry",
    "ProviderConnection",
    "ProviderDefinition",
    "ReconcileAnchor",
    "ReconcileRun",
    "RecordLease",
    "RecordLink",
    "RecordValue",
    "Subscription",
    "SyncLogEntry",
    "UtcDateTime",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookReceipt",
    "table_of",
    "utcnow",
]


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ProviderConnection(Base):
    """A client's connection to its ERP. One per client; ``credentials`` is Fernet ciphertext."""

    __tablename__ = "provider_connections"

    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(String(1024))
    settings: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    credentials: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class SyncLogEntry(Base):
    """Append-only journal of everything the worker did, per message and per record."""

    __tablename__ = "sync_log"
    __table_args__ = (
        Index("ix_sync_log_message", "message_id", "client_id", "id"),
        Index("ix_sync_log_client_at", "client_id", "id"),
        # The console's record timeline and search (migration 0008): a record's rows by its CW id or
        # by its ERP id, without walking the client's rows. Partial: a pending outbound row has no
        # external id, a webhook of a record not linked yet no CW id.
        partial_index("ix_sync_log_record", "client_id", "cw_id", where="cw_id IS NOT NULL"),
        partial_index("ix_sync_log_external", "client_id", "external_id", where="external_id IS NOT NULL"),
        # The last failure of each connection (migration 0009) from the few failure rows.
        partial_index(
            "ix_sync_log_failures", "client_id", "provider", "id", where="action IN ('failed', 'retry')"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(128))
    client_id: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str | None] = mapped_column(String(32))
    cw_id: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    version: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(UnicodeText)
    # On a ``pending`` row: the order key of the CW event being pushed (worker/messaging/order.py).
    cw_sequence: Mapped[int | None] = mapped_column(BigInteger)
    cw_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class RecordLink(Base):
    """The last state we wrote for a CW record in an ERP: its external id, version and hash.

    The sync log is the history; this is the index the pipeline and echo suppression read.
    """

    __tablename__ = "record_links"
    __table_args__ = (Index("ix_record_links_external", "client_id", "provider", "entity", "external_id"),)

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    cw_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Inbound (migration 0003): the fingerprint of the CW fields our last inbound write put into
    # CW. Since 0004 the fingerprints themselves are echo marks; this column only says that some
    # may be waiting (so the hot path reads echo_marks only then).
    cw_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Per-record order (migration 0004): the order key of the newest CW state the ERP holds, from
    # the newest CW event applied (its ``sequence``, else its ``occurred_at``) or from CW's version
    # after our own inbound write. An older event is ``superseded``, never pushed.
    cw_sequence: Mapped[int | None] = mapped_column(BigInteger)
    cw_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class InboxEntry(Base):
    """Envelope ids whose processing finished: a redelivery of one is completed without effect."""

    __tablename__ = "inbox"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """A connection's webhook URL token, stored as its SHA-256: the token is shown once, at creation."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_client", "client_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookReceipt(Base):
    """A vendor delivery the listener has published: the same delivery again is acknowledged only."""

    __tablename__ = "webhook_receipts"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ProviderDefinition(Base):
    """A third-party system implementing the generic REST interface, registered without a code change.

    Chosen when provisioning a client (its connection is ``generic_rest`` with the setting
    ``definition`` naming it); ``report`` is the last conformance run against it (JSON).
    """

    __tablename__ = "provider_definitions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(UnicodeText, default="")
    base_url_template: Mapped[str] = mapped_column(String(1024))
    auth_scheme: Mapped[str] = mapped_column(String(32))
    entities: Mapped[list[str]] = mapped_column(JSON, default=list)
    actions: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_signing: Mapped[str] = mapped_column(String(32))
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    validated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class RecordValue(Base):
    """The CW values a message carried, kept for the console's life of a record (secrets redacted).

    Written with the message's journal; ``number`` and ``name`` make records findable by them
    (the number by its index, the name by a scan of the client's rows: migration 0010).
    """

    __tablename__ = "record_values"
    __table_args__ = (
        Index("ix_record_values_record", "client_id", "entity", "cw_id", "id"),
        Index("ix_record_values_number", "client_id", "number"),
        # No index on the name: the console searches a part of it (ILIKE '%…%'), which none serves.
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    client_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(128))
    entity: Mapped[str] = mapped_column(String(32))
    cw_id: Mapped[str] = mapped_column(String(255))
    number: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[str] = mapped_column(UnicodeText)


class ReconcileAnchor(Base):
    """Where the next incremental reconciliation of a client's entity starts, on each side.

    ``cw_anchor`` is the cursor of CW's listing after the last run; ``erp_anchor`` the ERP's (its
    newest change time read, or its change token); ``full_at`` when the last full run started, so
    that a run whose anchors are too old is a full one again.
    """

    __tablename__ = "reconcile_anchors"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    cw_anchor: Mapped[str | None] = mapped_column(String(600))
    erp_anchor: Mapped[str | None] = mapped_column(String(600))
    full_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    pending: Mapped[list[list[str | None]] | None] = mapped_column(JSON)
    """``[cw_id, external_id]`` of what the last run found out of step: read again by the next
    incremental run, changed or not, until it is in step."""
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReconcileRun(Base):
    """One client's scheduled work: who runs it now (a lease, across processes) and when it last ran.

    ``holder`` and ``until`` (epoch ms) are set while a scheduler holds the client; a holder that
    died is replaced once ``until`` has passed. ``job`` is ``reconcile`` or ``validate``.
    """

    __tablename__ = "reconcile_runs"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(16), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    until: Mapped[int | None] = mapped_column(BigInteger)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_outcome: Mapped[str | None] = mapped_column(UnicodeText)


class Subscription(Base):
    """A third party's webhook subscription (``worker/publisher``): which of a client's events it
    wants (``events``: ``invoice.created``, ``customer.*``, ``*``), where, and with which fields.

    ``secrets`` is Fernet ciphertext of ``{"current", "previous"?, "previous_until"?}``: during a
    rotation's grace period both secrets sign every delivery. ``status`` is ``active`` or ``paused``
    (by an operator, after ``failures`` consecutive failed attempts, or by a 410 answer); a paused
    subscription's deliveries are kept until it is resumed.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_client", "client_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), ForeignKey("clients.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(255), default="")
    secrets: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    paused_reason: Mapped[str | None] = mapped_column(UnicodeText, nullable=True)
    paused_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the delivery log, and the order of a record's deliveries.

    ``id`` orders a subscription's deliveries of one record (``entity``, ``record_id``): none is
    sent while an earlier one is open (``queued``, ``retrying``, ``parked``). ``delivery_id`` is
    the ``webhook-id`` the subscriber sees (the same on every attempt). The rest is the last
    attempt: its HTTP status or error, latency and the start of the answer.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
        Index("ix_webhook_deliveries_record", "subscription_id", "entity", "record_id", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    subscription_id: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(UnicodeText)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    first_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(UnicodeText, nullable=True)
    response_excerpt: Mapped[str | None] = mapped_column(UnicodeText, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


TABLES = Base.metadata.sorted_tables
