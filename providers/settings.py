"""Typed reading of a connection's settings, one way for every provider, with the fix in every error.

Each provider kind declares its settings (``SettingSchema``): the CLI validates them when they are
set, and the provider reads them through ``SettingsReader`` when it needs them, so a bad value
dead-letters the message with ``MappingError`` naming the command that fixes it:
``cwi connections set CLIENT KIND --setting name=…``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from providers.base import ConnectionSpec
from providers.errors import AuthenticationFailed, MappingError

SettingType = Literal[
    "text", "integer", "flag", "positive_integer", "positive_number", "share", "side", "cron"
]
VAT_PREFIX = "vat_code."


class SettingProblem(ValueError):
    """A value that does not parse as its setting's type; the text says what it should be."""


def _integer(value: str) -> int:
    if not value.strip().isdigit():
        raise SettingProblem(f"{value!r} is not a whole number")
    return int(value)


def _positive_integer(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise SettingProblem(f"{value!r} is not a positive whole number")
    return number


def _positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise SettingProblem(f"{value!r} is not a positive number")
    return number


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise SettingProblem(f"{value!r} must be true or false")
    return lowered == "true"


def _share(value: str) -> float:
    number = _positive_number(value)
    if number > 1:
        raise SettingProblem(f"{value!r} is not a share between 0 and 1 (0.25 is a quarter)")
    return number


def _side(value: str) -> str:
    if value.strip().lower() not in ("cw", "erp"):
        raise SettingProblem(f"{value!r} must be cw or erp")
    return value.strip().lower()


def _cron(value: str) -> str:
    # Imported here: croniter (with dateutil, about 1 MB) is needed only where a cron setting is
    # read, never on a worker's message path.
    from croniter import CroniterBadDateError, croniter

    if not croniter.is_valid(value):
        raise SettingProblem(
            f"{value!r} is not a cron expression (minute hour day month weekday, e.g. 0 2 * * *)"
        )
    try:
        croniter(value).get_next()
    except CroniterBadDateError:
        raise SettingProblem(
            f"{value!r} never fires (a day no month has, like 31 2 for February 31)"
        ) from None
    return value


def _rate(text: str) -> Decimal:
    try:
        return Decimal(text).normalize()
    except InvalidOperation:
        raise SettingProblem(f"{text!r} after {VAT_PREFIX!r} is not a VAT rate in percent") from None


_PARSERS: Mapping[SettingType, Callable[[str], object]] = {
    "text": str,
    "integer": _integer,
    "flag": _flag,
    "positive_integer": _positive_integer,
    "positive_number": _positive_number,
    "share": _share,
    "side": _side,
    "cron": _cron,
}


def rate_text(rate: Decimal) -> str:
    """``25.00`` → ``25``: how a rate is written in a setting's name and in messages."""
    return format(rate.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting a provider kind reads. ``name`` ending in ``.<rate>`` declares a family
    (``vat_code.<rate>``: one setting per VAT rate)."""

    name: str
    type: SettingType
    help: str
    company: bool = False
    """Names something that exists in one ERP company only (an employee, a department, the tenant):
    left out when a mapping is carried to another client (``cwi connections export``)."""


COMMON_SETTINGS = (
    Setting("max_requests_per_minute", "positive_integer", "cap on this connection's requests a minute"),
    Setting("reconcile_schedule", "cron", "when reconciliation runs on its own (cron, e.g. 0 2 * * *)"),
    Setting("reconcile_repair", "flag", "scheduled reconciliation repairs what it finds (default false)"),
    Setting("reconcile_full_after_days", "positive_number", "a run reads everything again after this (7)"),
    Setting("reconcile_share", "share", "share of max_requests_per_minute reconciliation may use (0.25)"),
    Setting(
        "reconcile_max_deletes",
        "positive_integer",
        "deletes a repair run may make for one entity; more wait (10)",
    ),
    *(
        Setting(f"reconcile_winner.{entity}", "side", f"cw or erp: whose {entity} a repair keeps (cw)")
        for entity in ("customer", "supplier", "project", "invoice")
    ),
    Setting("validate_schedule", "cron", "when the mapping is checked against the ERP (0 6 * * *)"),
)


@dataclass(frozen=True, slots=True)
class SettingSchema:
    """The settings of one provider kind."""

    settings: tuple[Setting, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", (*COMMON_SETTINGS, *self.settings))

    def find(self, name: str) -> Setting | None:
        for setting in self.settings:
            family = setting.name.removesuffix(".<rate>")
            if setting.name == name or (family != setting.name and name.startswith(family + ".")):
                return setting
        return None

    def problems(self, raw: Mapping[str, str]) -> list[str]:
        """One line per setting that is unknown or does not parse; empty values mean "unset"."""
        found = []
        for name, value in sorted(raw.items()):
            setting = self.find(name)
            if setting is None:
                known = ", ".join(s.name for s in self.settings)
                found.append(f"unknown setting {name} (known: {known})")
                continue
            if value == "":
                continue
            try:
                if name.startswith(VAT_PREFIX):
                    _rate(name.removeprefix(VAT_PREFIX))
                _PARSERS[setting.type](value)
            except SettingProblem as exc:
                found.append(f"setting {name}: {exc}")
        return found


class SettingsReader:
    """A connection's settings read by type; every error names the setting and the command to fix it."""

    def __init__(
        self, client_id: str, kind: str, raw: Mapping[str, str], credentials: Mapping[str, str] | None = None
    ) -> None:
        self.client_id = client_id
        self.kind = kind
        self.raw = raw
        self._credentials = credentials or {}

    @classmethod
    def of(cls, spec: ConnectionSpec) -> SettingsReader:
        return cls(spec.client_id, spec.kind, spec.settings, spec.credentials)

    def credential(self, name: str, what: str = "") -> str:
        """A credential the connection must have (AuthenticationFailed naming it otherwise)."""
        value = self._credentials.get(name)
        if not value:
            raise self.missing_credential(name, what)
        return value

    def command(self, name: str) -> str:
        return f"cwi connections set {self.client_id} {self.kind} --setting {name}=…"

    def credential_command(self, name: str) -> str:
        return f"cwi connections set {self.client_id} {self.kind} --credential {name}=…"

    def missing_credential(self, name: str, what: str = "") -> AuthenticationFailed:
        """The error of a credential the connection lacks, with the command that adds it."""
        shown = f"{name} ({what})" if what else name
        return AuthenticationFailed(
            f"the {self.kind} connection of client {self.client_id} has no credential {shown}: "
            f"add it with `{self.credential_command(name)}`"
        )

    def fix(self, name: str, problem: str) -> MappingError:
        return MappingError(f"setting {name}: {problem} — fix it with `{self.command(name)}`")

    def missing(self, name: str, what: str) -> MappingError:
        return MappingError(f"missing setting {name} ({what}) — {self.command(name)}")

    def _parsed(self, name: str, parse: Callable[[str], object]) -> object | None:
        value = self.raw.get(name)
        if value in (None, ""):
            return None
        try:
            return parse(value)
        except SettingProblem as exc:
            raise self.fix(name, str(exc)) from None

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.raw.get(name) or default

    def required(self, name: str, what: str) -> str:
        value = self.raw.get(name)
        if not value:
            raise self.missing(name, what)
        return value

    def integer(self, name: str) -> int | None:
        found = self._parsed(name, _integer)
        return found if isinstance(found, int) else None

    def positive_integer(self, name: str) -> int | None:
        found = self._parsed(name, _positive_integer)
        return found if isinstance(found, int) else None

    def positive_number(self, name: str, default: float) -> float:
        found = self._parsed(name, _positive_number)
        return found if isinstance(found, float) else default

    def share(self, name: str, default: float) -> float:
        found = self._parsed(name, _share)
        return found if isinstance(found, float) else default

    def cron(self, name: str, default: str | None = None) -> str | None:
        found = self._parsed(name, _cron)
        return found if isinstance(found, str) else default

    def side(self, name: str, default: str) -> str:
        found = self._parsed(name, _side)
        return found if isinstance(found, str) else default

    def flag(self, name: str) -> bool:
        """A true/false setting, false when absent."""
        return self._parsed(name, _flag) is True

    def vat_codes(self) -> dict[Decimal, str]:
        """Every ``vat_code.<rate>`` setting by its rate (``25`` and ``25.00`` are one rate)."""
        codes: dict[Decimal, str] = {}
        for name, value in self.raw.items():
            if name.startswith(VAT_PREFIX) and value:
                try:
                    codes[_rate(name.removeprefix(VAT_PREFIX))] = value
                except SettingProblem as exc:
                    raise self.fix(name, str(exc)) from None
        return codes

    def vat_code(self, rate: Decimal, what: str = "") -> str:
        """The ERP's VAT code for a rate; ``what`` tells the operator what kind of value to set."""
        found = self.vat_codes().get(rate.normalize())
        if found is None:
            shown = rate_text(rate)
            name = f"{VAT_PREFIX}{shown}"
            raise MappingError(
                f"no VAT code for {shown}% — add setting {name} ({self.command(name)})"
                + (f", {what}" if what else "")
            )
        return found

    def vat_rate(self, code: str | None, what: str) -> str:
        """The rate whose ``vat_code.<rate>`` names ``code`` (inbound); exactly one must.
        ``what`` names the vendor's code in the error ("Visma.net VAT code")."""
        rates = {rate for rate, value in self.vat_codes().items() if value == code}
        if len(rates) != 1:
            raise MappingError(
                f"{what} {code!r} is named by {len(rates)} vat_code.<rate> settings; exactly one "
                f"must name it for CW to know the rate ({self.command('vat_code.<rate>')})"
            )
        return rate_text(rates.pop())
