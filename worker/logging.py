"""structlog setup: JSON lines (console on a terminal), secrets redacted before anything is written."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import ahocorasick

from providers import secrets as provider_secrets

# structlog is imported with rich hidden from it: its development renderer would import rich's
# traceback module and pygments (about 2 MB of a worker's memory) for tracebacks we never print
# (errors are one line); typer and our tables still load rich as usual. structlog has no option for
# this; its fallback is the plain traceback. The worker's modules reach structlog's context through
# this module (bind_contextvars, get_contextvars), so that this import comes first.
_rich = sys.modules.pop("rich", None)
sys.modules["rich"] = None  # type: ignore[assignment]  # an import of rich now fails
try:
    import structlog
    from structlog.contextvars import bind_contextvars as bind_contextvars
    from structlog.contextvars import get_contextvars as get_contextvars
finally:
    del sys.modules["rich"]
    if _rich is not None:
        sys.modules["rich"] = _rich

_SECRET_KEYS = re.compile(
    r"(secret|token|password|passwd|credential|authorization|api_?key|private_key)", re.I
)
REDACTED = "***"


class SecretRedactor:
    """A structlog processor: masks secret-named keys and every known secret value in any string.

    Credentials are registered as they are decrypted, so even a secret that ends up inside an
    error message from an ERP is masked. The values are found in one pass by an Aho-Corasick
    automaton (pyahocorasick), rebuilt when one was added since. A regular expression of the
    alternatives cost, with 500 credentials, 100 µs a string, and 4.3 s and 50 MB to build one
    credential at a time (every pattern compiled stayed in ``re``'s cache); the automaton, 2 µs a
    string without a credential, and 1.5 s and 2 MB. Where found values overlap, the whole stretch
    they cover is masked.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._finder: Any = None
        self._stale = False

    def register(self, *values: str | None) -> None:
        with self._lock:
            new = {v for v in values if v and len(v) >= 4} - self._values
            if new:
                self._values |= new
                self._stale = True

    def _rebuild(self) -> None:
        with self._lock:
            if self._stale:
                finder = ahocorasick.Automaton()
                for value in self._values:
                    finder.add_word(value, len(value))
                finder.make_automaton()
                self._finder, self._stale = finder, False

    def scrub(self, text: str) -> str:
        if self._stale:
            self._rebuild()
        finder = self._finder
        if finder is None:
            return text
        hits = list(finder.iter(text))
        if not hits:
            return text
        found = sorted((end - length + 1, end + 1) for end, length in hits)
        parts: list[str] = []
        done = 0
        cover_start, cover_end = found[0]
        for start, end in found[1:]:
            if start < cover_end:  # overlapping: one stretch
                cover_end = max(cover_end, end)
                continue
            parts += [text[done:cover_start], REDACTED]
            done, cover_start, cover_end = cover_end, start, end
        parts += [text[done:cover_start], REDACTED, text[cover_end:]]
        return "".join(parts)

    def redact(self, value: Any) -> Any:
        """``value`` (text, or JSON-like data) with secret-named keys and known secret values masked."""
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: REDACTED if _SECRET_KEYS.search(str(k)) else self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if _SECRET_KEYS.search(key):
                event[key] = REDACTED
            else:
                event[key] = self._clean(value)
        return event


redactor = SecretRedactor()
# Tokens and Authorization values providers learn at run time are secrets too (an ERP may quote one).
provider_secrets.on_secret(redactor.register)


def configure(*, fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _route_library_logs()


class _LibraryRecords(logging.Handler):
    """The libraries' own log records (the Azure SDK's) as our events: one line each, redacted,
    the exception as its type and message (the SDK logs some expected timeouts with a traceback)."""

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
        get_logger().log(record.levelno, record.getMessage(), **fields)


def _route_library_logs() -> None:
    sdk = logging.getLogger("azure")
    sdk.handlers = [_LibraryRecords()]  # replaced, not added: configure() may run more than once
    sdk.setLevel(logging.WARNING)
    sdk.propagate = False


def get_logger(**bound: Any) -> Any:
    """A lazy logger: it picks up the configuration in force when it logs, not when it was made."""
    return structlog.get_logger("cwi", **bound)
