"""The optional extras (``pip install 'cwi[postgres]'`` …): a missing one is named with the line to run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Top-level module of each optional dependency → the extra of pyproject.toml that installs it.
EXTRA_OF_MODULE = {
    "psycopg": "postgres",
    "psycopg2": "postgres",
    "pyodbc": "mssql",
    "azure": "azure",
    "schemathesis": "conformance",
    "hypothesis": "conformance",
    # The OpenTelemetry API is a dependency of cwi; the SDK, the exporter and the aiohttp spans are not.
    "opentelemetry": "tracing",
}


class MissingExtraError(Exception):
    """An optional dependency is not installed; the message says which extra installs it."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the {extra} extra: pip install 'cwi[{extra}]'")
        self.extra = extra


@contextmanager
def extra_needed(what: str) -> Iterator[None]:
    """Turn the ModuleNotFoundError of an optional dependency inside the block into MissingExtraError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise MissingExtraError(what, extra) from exc
