"""Reading an ERP's records in bulk, for reconciliation: every record, or those changed since an anchor.

Each vendor pages with its own parameters (Tripletex ``from``/``count`` + ``changedSince``, Visma.net
``pageNumber``/``pageSize`` + ``lastModifiedDateTime``, Uni ``top``/``skip`` + ``filter=UpdatedAt gt``,
the generic REST interface ``cursor`` + ``changed_since``); what comes back is the same everywhere:
pages of ``Listed`` records, each in the shape ``fetch`` gives (so ``to_cw`` maps it), and an
``anchor`` after each page, the point the next incremental run starts from (a change time, or the
vendor's change token). Anchors are opaque text to the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from contracts import Entity
from providers.base import EXTERNAL_ID_MAX, VERSION_MAX, refuse_unstorable
from providers.errors import ProviderRejected

DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Listed:
    """One ERP record as a listing (or a point read) found it; ``value`` is None when deleted."""

    external_id: str
    value: Mapping[str, Any] | None
    version: str | None = None
    author: str | None = None
    changed_at: dt.datetime | None = None
    cw_id: str | None = None
    """CW's id where the ERP keeps it (the generic REST interface)."""

    def __post_init__(self) -> None:
        refuse_unstorable(
            ProviderRejected,
            "the ERP listed",
            ("external id", self.external_id, EXTERNAL_ID_MAX),
            ("version", self.version, VERSION_MAX),
            ("CW id", self.cw_id, EXTERNAL_ID_MAX),
        )

    @property
    def deleted(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class ListedPage:
    items: tuple[Listed, ...]
    anchor: str | None
    """Where a later run starts to read what changed after this page (None: nothing known yet)."""


class ListingProvider(Protocol):
    """What reconciliation needs from a provider on the ERP's side."""

    def list_records(
        self, entity: Entity, since: str | None, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[ListedPage]:
        """Pages of the entity's records: all of them (``since`` None), or those changed after the
        anchor ``since`` (records deleted in the ERP only where the ERP lists deletions)."""
        ...

    async def read_record(
        self, entity: Entity, *, external_id: str | None, cw_id: str | None, number: str | None
    ) -> Listed | None:
        """One record: by the ERP's id when known, else by CW's id (generic REST) or by its number;
        None when the ERP has no such record."""
        ...

    def anchor_at(self, when: dt.datetime) -> str:
        """The anchor from which ``list_records`` reads what changed after ``when``."""
        ...


def latest(anchor: str | None, *times: dt.datetime | None) -> str | None:
    """The newer of an ISO anchor and some change times, as an ISO anchor (UTC)."""
    known = [t.astimezone(dt.UTC) for t in times if t is not None]
    if anchor:
        known.append(parse_time(anchor))
    return max(known).isoformat() if known else anchor


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 date-time; without an offset it is read as UTC (as the vendors mean it)."""
    when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_time_or_none(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


MAX_PAGES = 100_000
"""Pages one listing reads at most: millions of records at any vendor's page size."""


class Paging:
    """Guards a vendor's pagination against an ERP that never ends it, which would read (and hold)
    pages for ever: a page that repeats the one before (an offset or page number the ERP ignores), a
    cursor it gave before, or more than ``MAX_PAGES`` pages. ProviderRejected naming the request."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._pages = 0
        self._last: tuple[str, ...] = ()
        self._cursors: set[str] = set()

    def read(self, keys: Iterable[object], cursor: str | None = None) -> None:
        """One more page, with its records' keys and, for cursor paging, the cursor it gave next."""
        self._pages += 1
        page = tuple(map(str, keys))
        if page and page == self._last:
            raise ProviderRejected(
                f"{self._what}: page {self._pages} repeats page {self._pages - 1}; the paging "
                "parameters are ignored, so the listing would never end"
            )
        if cursor is not None and cursor in self._cursors:
            raise ProviderRejected(
                f"{self._what}: the cursor {cursor[:64]!r} came a second time; the paging loops"
            )
        if self._pages >= MAX_PAGES:
            raise ProviderRejected(f"{self._what}: more than {MAX_PAGES:,} pages; the paging does not end")
        self._last = page
        if cursor is not None:
            self._cursors.add(cursor)
