"""Configuration from ``CWI_*`` environment variables (12-factor), and from a ``.env`` file.

The environment wins over the file. The file is ``.env`` in the working directory unless
``CWI_ENV_FILE`` names another (empty: none); it is read each time settings are loaded.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from config_db.durations import parse_duration

ENV_FILE_VARIABLE = "CWI_ENV_FILE"
# Bounds of the durations: 1e300 seconds passed every check and ended the worker in an OverflowError
# (a timedelta, a timestamp in milliseconds); no one means more than these.
DAY_S = 86_400
YEAR_S = 365 * DAY_S


class SettingsError(Exception):
    """Bad ``CWI_*`` configuration; the message names each variable at fault."""


class _CwiSettings(BaseSettings):
    """``CWI_*`` variables; the environment first, then the .env file."""

    # No infinities nor NaN in any setting: CWI_LOCK_DURATION_S=inf passed ``gt=0`` and ended the
    # worker with "OverflowError: cannot convert float infinity to integer".
    model_config = SettingsConfigDict(
        env_prefix="CWI_", extra="ignore", env_file_encoding="utf-8", allow_inf_nan=False
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _dotenv(settings_cls), file_secret_settings


def _dotenv(settings_cls: type[BaseSettings]) -> DotEnvSettingsSource:
    """The .env file's settings. A file named by ``CWI_ENV_FILE`` must exist (a typo ran the worker
    on the defaults: a new SQLite database beside the real one); any file must be readable UTF-8
    (a binary one was "unexpected error: UnicodeDecodeError")."""
    named = os.environ.get(ENV_FILE_VARIABLE)
    env_file = ".env" if named is None else named or None
    if named and not os.path.isfile(named):
        raise SettingsError(f"{ENV_FILE_VARIABLE}: {named} is not a file (empty: no .env file)")
    if env_file is not None and os.path.isfile(env_file):
        _check_lines(env_file)
    return DotEnvSettingsSource(settings_cls, env_file=env_file)


def _check_lines(env_file: str) -> None:
    """Every line of the file is NAME=value, a comment or blank: python-dotenv skips any other with
    a warning of its own that names no file, and the setting on it is silently not set."""
    from dotenv.parser import parse_stream

    try:
        with open(env_file, encoding="utf-8") as stream:
            bad = [binding.original.line for binding in parse_stream(stream) if binding.error]
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{env_file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{env_file}: cannot be read ({exc.strerror})") from None
    if bad:
        lines = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
        raise SettingsError(f"{env_file}, line {lines}: not NAME=value (nor a comment)")


MAX_CONCURRENCY = 1024
"""Messages in flight in one worker, at most (``CWI_CONCURRENCY``, ``--concurrency``)."""
MAX_LISTED = 100_000
"""Entries one listing shows at most (``--limit``: the sync log's, the dead letters')."""


class Settings(_CwiSettings):
    database_url: str = "sqlite:///cwi.db"
    bus: Literal["local", "azure"] = "local"
    queue: str = "cwi"
    secret_key: SecretStr | None = None
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] = 16
    prefetch: Annotated[int | None, Field(ge=0, le=MAX_CONCURRENCY)] = None
    """Messages locked ahead of the ERP calls, ready to start the moment a call finishes
    (default: as many as ``concurrency``)."""
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (60.0, 300.0, 900.0)
    inprocess_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    max_delivery_count: Annotated[int, Field(ge=1, le=2000)] = 10  # Service Bus's own maximum
    # At most Service Bus's own maximum: locks are renewed while a message is worked on, so a longer
    # one only keeps a crashed worker's messages waiting (60000, meant as ms, was 17 hours of it).
    lock_duration_s: Annotated[float, Field(gt=0, le=300)] = 60.0
    shutdown_grace_s: Annotated[float, Field(ge=0, le=DAY_S)] = 30.0
    connection_cache_s: Annotated[float, Field(ge=0, le=DAY_S)] = 30.0
    startup_wait_s: Annotated[float, Field(ge=0, le=DAY_S)] = 60.0
    """At start, how long to wait for the database before giving up (an orchestrator may start both)."""
    outage_exit_s: Annotated[float | None, Field(gt=0, le=YEAR_S)] = None
    """How long a running worker waits out a database outage before it exits (unset: for ever)."""
    echo_window_s: Annotated[float, Field(gt=0, le=YEAR_S)] = 86400.0
    """How long every version, hash and fingerprint we wrote is remembered to recognise its echo."""
    synclog_retention: dt.timedelta | None = None
    """``90d``, ``12h``, ``30m``: `cwi run`'s housekeeping deletes older sync-log entries and record
    values (what the worker and the console still need is kept; ``cwi synclog prune``). Unset or
    ``off``: both are kept for ever."""
    record_lease_s: Annotated[float | None, Field(gt=0, le=DAY_S)] = None
    """How long a record stays leased by a worker that died holding it (default: twice the lock
    duration, at least 120 s); a redelivery of the same message takes the lease over at once."""
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Observability. `cwi run` serves /healthz, /readyz and /metrics on a port of its own (`off`: none;
    # 0: any free port, logged); the bus's depth is sampled every METRICS_SAMPLE_S; the first
    # METRICS_MAX_CLIENTS client ids a process meets are metric labels, the rest are `other`.
    metrics_port: Annotated[int | None, Field(ge=0, le=65535)] = 9464
    metrics_host: str = "127.0.0.1"
    metrics_sample_s: Annotated[float, Field(gt=0, le=DAY_S)] = 15.0
    metrics_max_clients: Annotated[int, Field(ge=0)] = 100
    tracing: Literal["off", "otlp", "console"] | None = None
    """Traces: ``otlp`` (to OTEL_EXPORTER_OTLP_ENDPOINT), ``console`` (stderr) or ``off``; unset,
    they are on (otlp) exactly when OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    # Webhooks: the base of the URLs `cwi webhooks url` prints, and each URL token's rate limit
    # (a token bucket: RATE_PER_S calls a second on average, RATE_BURST at once).
    public_url: str = "http://127.0.0.1:8080"
    webhook_rate_per_s: Annotated[float, Field(gt=0)] = 20.0
    webhook_rate_burst: Annotated[int, Field(ge=1)] = 40

    # CW's own APIs, for the inbound path and for filling thin events. Unset: the worker still
    # pushes outbound events, and dead-letters what needs CW (NotSupported) with a clear reason.
    cw_graphql_url: str | None = None
    cw_write_url: str | None = None
    cw_api_key: SecretStr | None = None

    # `cwi run` also runs scheduled reconciliation and mapping validation (`cwi serve --worker` always).
    schedule: bool = False

    admin_api_key: SecretStr | None = None  # the operator key of the admin API (/admin/...); unset: disabled
    # Keys of the lesser roles (the admin API and the console's log-in): an operator replays and
    # purges dead letters, a viewer only reads.
    operator_api_key: SecretStr | None = None
    viewer_api_key: SecretStr | None = None

    # The operator console (/console).
    console_edit_retry: bool = False
    """Edit and retry of dead letters: off unless a deployment switches it on."""
    console_session_key: SecretStr | None = None
    """Signs the console's session cookie (default: derived from the admin key)."""
    record_values: bool = True
    """Keep the CW values of each completed write (record_values) for the console's record timeline."""
    # OpenID Connect log-in for the console (authorization code with PKCE); unset issuer: key log-in only.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email"
    oidc_roles_claim: str = "roles"
    oidc_role_map: Annotated[dict[str, str], NoDecode] = {}
    """``claim value=role,…``; the claim values viewer, operator and admin need no mapping."""

    @property
    def effective_lease_s(self) -> float:
        return (
            self.record_lease_s if self.record_lease_s is not None else max(120.0, 2 * self.lock_duration_s)
        )

    @property
    def effective_prefetch(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _port_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "false"):
            return None
        return value

    @field_validator("synclog_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().lower() in ("", "off", "none", "false", "0"):
            return None
        return parse_duration(value)

    @field_validator("tracing", mode="before")
    @classmethod
    def _tracing_words(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if not word:
            return None
        if word in ("0", "false", "no", "off", "none"):
            return "off"
        return "otlp" if word in ("1", "true", "yes", "on") else word

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _split_role_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mapping = {}
        for pair in filter(None, (p.strip() for p in value.split(","))):
            claim, sep, role = pair.partition("=")
            if not sep or role.strip() not in ("viewer", "operator", "admin"):
                raise ValueError(f"must be value=role pairs (role: viewer, operator, admin), not {pair!r}")
            mapping[claim.strip()] = role.strip()
        return mapping

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                delays = tuple(float(p) for p in parts)
            except ValueError:
                raise ValueError(f"must be comma-separated seconds like 60,300,900, not {value!r}") from None
            if not all(math.isfinite(d) and d <= YEAR_S for d in delays):
                raise ValueError(f"delays must be seconds up to a year, like 60,300,900, not {value!r}")
            if any(d < 0 for d in delays):
                raise ValueError("delays cannot be negative")
            return delays
        return value

    @property
    def cw_key(self) -> str | None:
        return None if self.cw_api_key is None else self.cw_api_key.get_secret_value()

    @property
    def secret(self) -> str | None:
        return None if self.secret_key is None else self.secret_key.get_secret_value()


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"CWI_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        ]
        raise SettingsError("; ".join(problems)) from None


# --- Azure Service Bus (``CWI_SERVICEBUS_*``) ------------------------------------------------------
# A class of their own, read only when ``CWI_BUS=azure``: the local bus never needs them, and each
# error still names its variable.

_PUBLIC_CLOUD_SUFFIX = ".servicebus.windows.net"


class AzureBusSettings(_CwiSettings):
    servicebus_queue: str | None = None
    servicebus_topic: str | None = None
    servicebus_subscription: str | None = None
    servicebus_connection_string: SecretStr | None = None
    servicebus_namespace: str | None = None
    servicebus_sessions: bool = False
    # How long a session receiver waits for its session's next message before letting the session go.
    servicebus_session_idle_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # How long a failing connection is retried before receive gives up (the process then exits).
    servicebus_reconnect_s: Annotated[float, Field(gt=0, le=DAY_S)] = 300.0
    # Receivers (links, each on a connection of its own) on an entity without sessions; each settles
    # what it received, so that one settlement's round trip does not hold up the others'. More than
    # one: faster with quick ERPs, but a process that dies (or loses its connections) may cost a
    # message that many deliveries (worker/buses/azure/fan.py).
    servicebus_receivers: Annotated[int, Field(ge=1, le=16)] = 1

    @field_validator(
        "servicebus_queue",
        "servicebus_topic",
        "servicebus_subscription",
        "servicebus_namespace",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("servicebus_namespace")
    @classmethod
    def _qualify_namespace(cls, value: str | None) -> str | None:
        """``myns``, ``myns.servicebus.windows.net`` and ``sb://myns.servicebus.windows.net/`` all work."""
        if value is None:
            return None
        host = value.strip().removeprefix("sb://").removeprefix("https://").rstrip("/")
        if not host or "/" in host:
            raise ValueError(
                f"must be a namespace name or host like myns.servicebus.windows.net, not {value!r}"
            )
        return host if "." in host or ":" in host else host + _PUBLIC_CLOUD_SUFFIX

    @model_validator(mode="after")
    def _entity_and_credentials(self) -> Self:
        problems = [*self._entity_problems(), *self._credential_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _entity_problems(self) -> list[str]:
        queue, topic, sub = self.servicebus_queue, self.servicebus_topic, self.servicebus_subscription
        if queue and topic:
            return ["set CWI_SERVICEBUS_QUEUE or CWI_SERVICEBUS_TOPIC, not both"]
        if not queue and not topic:
            return [
                "CWI_SERVICEBUS_QUEUE or CWI_SERVICEBUS_TOPIC (with CWI_SERVICEBUS_SUBSCRIPTION) is required"
            ]
        if topic and not sub:
            return ["CWI_SERVICEBUS_SUBSCRIPTION is required with CWI_SERVICEBUS_TOPIC"]
        if queue and sub:
            return ["CWI_SERVICEBUS_SUBSCRIPTION applies to a topic; a queue has none"]
        return []

    def _credential_problems(self) -> list[str]:
        conn = self.servicebus_connection_string
        if conn is not None and self.servicebus_namespace:
            return ["set CWI_SERVICEBUS_CONNECTION_STRING or CWI_SERVICEBUS_NAMESPACE, not both"]
        if conn is None and not self.servicebus_namespace:
            return [
                "CWI_SERVICEBUS_CONNECTION_STRING or CWI_SERVICEBUS_NAMESPACE "
                "(signing in with DefaultAzureCredential) is required"
            ]
        if conn is not None and "endpoint=" not in conn.get_secret_value().lower():
            # The value is a secret: describe what is wrong without echoing it.
            return ["CWI_SERVICEBUS_CONNECTION_STRING has no Endpoint=sb://…; copy it from the portal"]
        return []

    @property
    def entity(self) -> str:
        """The entity path: the queue, or ``<topic>/Subscriptions/<subscription>``."""
        if self.servicebus_queue:
            return self.servicebus_queue
        return f"{self.servicebus_topic}/Subscriptions/{self.servicebus_subscription}"

    @property
    def send_entity(self) -> str:
        """Where publishing goes: the queue or the topic."""
        return self.servicebus_queue or str(self.servicebus_topic)

    @property
    def connection_string(self) -> str | None:
        conn = self.servicebus_connection_string
        return None if conn is None else conn.get_secret_value()


def load_azure_settings(**overrides: object) -> AzureBusSettings:
    """Settings from the environment (and ``overrides``); SettingsError names each variable at fault."""
    try:
        return AzureBusSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"CWI_{str(err['loc'][0]).upper()}: {msg}" if err["loc"] else msg)
        raise SettingsError("; ".join(problems)) from None
