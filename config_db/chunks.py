"""Long ``IN (...)`` lists, asked for in chunks: SQL Server takes at most 2,100 parameters in a
statement (PostgreSQL 65,535, SQLite 32,766), and a list may come from a webhook call of ten thousand
changes or from thousands of clients. One chunk size for every such list, far below every limit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

IN_CHUNK = 500
"""Values in one ``IN`` list."""

T = TypeVar("T")


def in_chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, in order (``itertools.batched`` from Python 3.12)."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
