"""The publisher's settings (``CWI_PUBLISHER_*``): a class of their own, like the Service Bus ones."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.settings import DAY_S, YEAR_S, SettingsError


class PublisherSettings(BaseSettings):
    """Every duration is bounded (at most a day or a year): ``inf`` or ``1e12`` passed the checks and
    then overflowed the dates made from them, failing each delivery or rotation that used one."""

    model_config = SettingsConfigDict(env_prefix="CWI_PUBLISHER_", extra="ignore")

    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """How long one call to a subscriber may take (connecting, sending, the whole answer)."""
    retry_first_s: Annotated[float, Field(gt=0, le=DAY_S)] = 30.0
    """The wait after the first failed attempt; each further wait doubles (with jitter)."""
    retry_max_s: Annotated[float, Field(gt=0, le=DAY_S)] = 3600.0
    """The longest wait between two attempts."""
    retry_for_s: Annotated[float, Field(gt=0, le=YEAR_S)] = 86400.0
    """How long after its first attempt a delivery is still retried; then it is dead-lettered."""
    pause_after_failures: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    """A subscription whose attempts failed this many times in a row (throttling answers aside) …"""
    pause_after_s: Annotated[float, Field(ge=0, le=YEAR_S)] = 3600.0
    """… for at least this long is paused; its deliveries are kept until an operator resumes it."""
    rotation_grace_s: Annotated[float, Field(ge=0, le=YEAR_S)] = 86400.0
    """After a secret rotation, how long the old secret still signs (beside the new one)."""
    allow_private: bool = False
    """Allow endpoints on private, loopback, link-local and other non-global addresses."""
    allow_http: bool = False
    """Allow plain http:// endpoints (https:// only otherwise)."""
    directory_s: Annotated[float, Field(ge=0, le=DAY_S)] = 5.0
    """How long the worker keeps its list of subscriptions before reading it again."""


def load_publisher_settings(**overrides: object) -> PublisherSettings:
    """From the environment (and ``overrides``); SettingsError names each variable at fault."""
    try:
        return PublisherSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"CWI_PUBLISHER_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        ]
        raise SettingsError("; ".join(problems)) from None
