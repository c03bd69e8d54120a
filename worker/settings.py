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
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (60.0, 300.0, 900.0)
    inprocess_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    max_delivery_count: Annotated[int, Field(ge=1)] = 10
    lock_duration_s: Annotated[float, Field(gt=0)] = 60.0
    shutdown_grace_s: Annotated[float, Field(ge=0)] = 30.0
    connection_cache_s: Annotated[float, Field(ge=0)] = 30.0
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    admin_api_key: SecretStr | None = None  # the operator key of the admin API (/admin/...); unset: disabled

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
