"""Configuration from ``CWI_*`` environment variables (12-factor)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CWI_", extra="ignore")

    database_url: str = "sqlite:///cwi.db"
    bus: Literal["local", "azure"] = "local"
    queue: str = "cwi"
    secret_key: SecretStr | None = None
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    prefetch: Annotated[int | None, Field(ge=0, le=1024)] = None
    """Messages locked ahead of the ERP calls, ready to start the moment a call finishes
    (default: as many as ``concurrency``)."""
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (60.0, 300.0, 900.0)
    inprocess_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    max_delivery_count: Annotated[int, Field(ge=1)] = 10
    lock_duration_s: Annotated[float, Field(gt=0)] = 60.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 30.0
    connection_cache_s: Annotated[float, Field(ge=0)] = 30.0
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
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

    @property
    def effective_prefetch(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                delays = tuple(float(p) for p in parts)
            except ValueError:
                raise ValueError(f"must be comma-separated seconds like 60,300,900, not {value!r}") from None
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


class SettingsError(Exception):
    """Bad ``CWI_*`` configuration; the message names each variable at fault."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"CWI_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        ]
        raise SettingsError("; ".join(problems)) from None
