"""The generic REST interface document (contracts/generic_rest.openapi.json), as data.

The sandbox ERP, the conformance kit and the page docs/interface.md all read it from here, so
there is one document and one way to load it.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

DOCUMENT_NAME = "generic_rest.openapi.json"
#: The interface version: the path prefix, and what ``GET {base}/v1/_ping`` answers as ``interface``.
VERSION = "v1"
ENTITIES = ("customer", "supplier", "project", "invoice")


def document_text() -> str:
    return (files("contracts") / DOCUMENT_NAME).read_text(encoding="utf-8")


@functools.cache
def _parsed() -> str:
    return document_text()


def load_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    document: dict[str, Any] = json.loads(_parsed())
    return document


def rules() -> frozenset[str]:
    """The ``rule`` codes a 409/422 answer may carry (components/schemas/Rule)."""
    return frozenset(load_document()["components"]["schemas"]["Rule"]["enum"])
