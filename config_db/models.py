r"""The configuration database's tables (SQLAlchemy Core ``Table``\ s in one ``metadata``).

Portable across SQLite, PostgreSQL and SQL Server: every indexed string has a length, JSON is
stored through SQLAlchemy's JSON type, and bus timestamps are epoch milliseconds so that lock and
visibility comparisons are plain integer comparisons on every dialect. The local bus's table
(``models_bus``) and the leases' and echo marks' (``models_marks``) live in their own modules and are
re-exported here: ``from config_db.models import X`` works for every table.

Core tables, not ORM classes: nothing reads rows as objects, and the ORM would add 5.6 MB to every
worker's memory.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UnicodeText,
)

from config_db.models_base import UtcDateTime, metadata, partial_index, utcnow
from config_db.models_bus import bus_messages
from config_db.models_marks import echo_marks, record_leases

__all__ = [
    "TABLES",
    "UtcDateTime",
    "bus_messages",
    "clients",
    "echo_marks",
    "inbox",
    "metadata",
    "provider_connections",
    "provider_definitions",
    "reconcile_anchors",
    "reconcile_runs",
    "record_leases",
    "record_links",
    "record_values",
    "subscriptions",
    "sync_log",
    "utcnow",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_receipts",
]


# What operators type that has a column of bounded length: checked where it is set (worker/operators),
# since PostgreSQL and SQL Server refuse a longer value with a DataError and SQLite keeps it.
CLIENT_NAME_LENGTH = 255
BASE_URL_LENGTH = 1024
SUBSCRIPTION_DESCRIPTION_LENGTH = 255
SUBSCRIPTION_URL_LENGTH = 2048

clients = Table(
    "clients",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(CLIENT_NAME_LENGTH), nullable=False),
    Column("created_at", UtcDateTime, default=utcnow, nullable=False),
)


# A client's connection to its ERP. One per client; ``credentials`` is Fernet ciphertext.
provider_connections = Table(
    "provider_connections",
    metadata,
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("base_url", String(BASE_URL_LENGTH), nullable=False),
    Column("settings", JSON, default=dict, nullable=False),
    Column("credentials", Text, default="", nullable=False),
    Column("enabled", Boolean, default=True, nullable=False),
    Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
)


# Append-only journal of everything the worker did, per message and per record.
sync_log = Table(
    "sync_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UtcDateTime, default=utcnow, nullable=False),
    Column("message_id", String(128)),
    Column("client_id", String(64)),
    Column("provider", String(32)),
    Column("direction", String(16), nullable=False),
    Column("entity", String(32)),
    Column("cw_id", String(255)),
    Column("external_id", String(255)),
    Column("action", String(32), nullable=False),
    Column("version", String(64)),
    Column("content_hash", String(64)),
    Column("detail", UnicodeText),
    # On a ``pending`` row: the order key of the CW event being pushed (worker/messaging/order.py).
    Column("cw_sequence", BigInteger),
    Column("cw_at", UtcDateTime),
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


# The last state we wrote for a CW record in an ERP: its external id, version and hash.
#
# The sync log is the history; this is the index the pipeline and echo suppression read.
record_links = Table(
    "record_links",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("provider", String(32), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("cw_id", String(255), primary_key=True),
    Column("external_id", String(255)),
    Column("version", String(64)),
    Column("content_hash", String(64)),
    Column("deleted", Boolean, default=False, nullable=False),
    Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
    # Inbound (migration 0003): the fingerprint of the CW fields our last inbound write put into
    # CW. Since 0004 the fingerprints themselves are echo marks; this column only says that some
    # may be waiting (so the hot path reads echo_marks only then).
    Column("cw_fingerprint", String(64)),
    # Per-record order (migration 0004): the order key of the newest CW state the ERP holds, from
    # the newest CW event applied (its ``sequence``, else its ``occurred_at``) or from CW's version
    # after our own inbound write. An older event is ``superseded``, never pushed.
    Column("cw_sequence", BigInteger),
    Column("cw_at", UtcDateTime),
    Index("ix_record_links_external", "client_id", "provider", "entity", "external_id"),
)


# Envelope ids whose processing finished: a redelivery of one is completed without effect.
inbox = Table(
    "inbox",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("message_id", String(128), primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("finished_at", UtcDateTime, default=utcnow, nullable=False),
)


# A connection's webhook URL token, stored as its SHA-256: the token is shown once, at creation.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    Index("ix_webhook_endpoints_client", "client_id"),
)


# A vendor delivery the listener has published: the same delivery again is acknowledged only.
webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("provider", String(32), primary_key=True),
    Column("delivery_key", String(255), primary_key=True),
    Column("received_at", UtcDateTime, default=utcnow, nullable=False),
)


# A third-party system implementing the generic REST interface, registered without a code change.
#
# Chosen when provisioning a client (its connection is ``generic_rest`` with the setting
# ``definition`` naming it); ``report`` is the last conformance run against it (JSON).
provider_definitions = Table(
    "provider_definitions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", UnicodeText, default="", nullable=False),
    Column("base_url_template", String(BASE_URL_LENGTH), nullable=False),
    Column("auth_scheme", String(32), nullable=False),
    Column("entities", JSON, default=list, nullable=False),
    Column("actions", JSON, default=list, nullable=False),
    Column("webhook_signing", String(32), nullable=False),
    Column("report", JSON),
    Column("validated_at", UtcDateTime),
    Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
)


# The CW values a message carried, kept for the console's life of a record (secrets redacted).
#
# Written with the message's journal; ``number`` and ``name`` make records findable by them
# (the number by its index, the name by a scan of the client's rows: migration 0010).
record_values = Table(
    "record_values",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UtcDateTime, default=utcnow, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("cw_id", String(255), nullable=False),
    Column("number", String(255)),
    Column("name", String(255)),
    Column("data", UnicodeText, nullable=False),
    Index("ix_record_values_record", "client_id", "entity", "cw_id", "id"),
    Index("ix_record_values_number", "client_id", "number"),
    # No index on the name: the console searches a part of it (ILIKE '%…%'), which none serves.
)


# Where the next incremental reconciliation of a client's entity starts, on each side.
#
# ``cw_anchor`` is the cursor of CW's listing after the last run; ``erp_anchor`` the ERP's (its
# newest change time read, or its change token); ``full_at`` when the last full run started, so
# that a run whose anchors are too old is a full one again.
reconcile_anchors = Table(
    "reconcile_anchors",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("cw_anchor", String(600)),
    Column("erp_anchor", String(600)),
    Column("full_at", UtcDateTime),
    # ``[cw_id, external_id]`` of what the last run found out of step: read again by the next
    # incremental run, changed or not, until it is in step.
    Column("pending", JSON),
    Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
)


# One client's scheduled work: who runs it now (a lease, across processes) and when it last ran.
#
# ``holder`` and ``until`` (epoch ms) are set while a scheduler holds the client; a holder that
# died is replaced once ``until`` has passed. ``job`` is ``reconcile`` or ``validate``.
reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("job", String(16), primary_key=True),
    Column("holder", String(64)),
    Column("until", BigInteger),
    Column("last_run_at", UtcDateTime),
    Column("last_outcome", UnicodeText),
)


# A third party's webhook subscription (``worker/publisher``): which of a client's events it
# wants (``events``: ``invoice.created``, ``customer.*``, ``*``), where, and with which fields.
#
# ``secrets`` is Fernet ciphertext of ``{"current", "previous"?, "previous_until"?}``: during a
# rotation's grace period both secrets sign every delivery. ``status`` is ``active`` or ``paused``
# (by an operator, after ``failures`` consecutive failed attempts, or by a 410 answer); a paused
# subscription's deliveries are kept until it is resumed.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_id", String(64), ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("url", String(SUBSCRIPTION_URL_LENGTH), nullable=False),
    Column("events", JSON, default=list, nullable=False),
    Column("fields", JSON, default=list, nullable=False),
    Column("description", String(SUBSCRIPTION_DESCRIPTION_LENGTH), default="", nullable=False),
    Column("secrets", Text, nullable=False),
    Column("status", String(16), default="active", nullable=False),
    Column("paused_reason", UnicodeText),
    Column("paused_at", UtcDateTime),
    Column("failures", Integer, default=0, nullable=False),
    Column("failing_since", UtcDateTime),
    Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    Column("updated_at", UtcDateTime, default=utcnow, nullable=False),
    Index("ix_subscriptions_client", "client_id"),
)


# One event for one subscription: the delivery log, and the order of a record's deliveries.
#
# ``id`` orders a subscription's deliveries of one record (``entity``, ``record_id``): none is
# sent while an earlier one is open (``queued``, ``retrying``, ``parked``). ``delivery_id`` is
# the ``webhook-id`` the subscriber sees (the same on every attempt). The rest is the last
# attempt: its HTTP status or error, latency and the start of the answer.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), unique=True, nullable=False),
    Column("subscription_id", String(32), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("record_id", String(255), nullable=False),
    Column("payload", UnicodeText, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("created_at", UtcDateTime, default=utcnow, nullable=False),
    Column("first_attempt_at", UtcDateTime),
    Column("last_attempt_at", UtcDateTime),
    Column("next_attempt_at", UtcDateTime),
    Column("delivered_at", UtcDateTime),
    Column("last_status", Integer),
    Column("last_error", UnicodeText),
    Column("response_excerpt", UnicodeText),
    Column("latency_ms", Integer),
    Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
    Index("ix_webhook_deliveries_record", "subscription_id", "entity", "record_id", "id"),
)


TABLES = metadata.sorted_tables
