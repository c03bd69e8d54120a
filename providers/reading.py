"""Small readers shared by the vendor → CW mappings (the inbound path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.errors import MappingError


def text(value: Any) -> str | None:
    """A vendor's text field; empty text ("") is no value, as in CW."""
    return str(value) if value not in (None, "") else None


def nested(value: Mapping[str, Any], *path: str) -> Any:
    """``value[path[0]][path[1]]…``, or None where a level is missing or not an object."""
    node: Any = value
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def cw_address(
    parts: Mapping[str, str | None], where: str, labels: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """A CW address from its four parts; None when street, postal code and city are all empty.

    ``where`` names the vendor's address in the error ("Tripletex customer 7 has a postal address");
    ``labels`` gives the vendor's names for the missing parts when the error should use them.
    """
    if not any(parts[k] for k in ("street", "postal_code", "city")):
        return None
    missing = [(labels or {}).get(k, k) for k, v in parts.items() if v is None]
    if missing:
        raise MappingError(
            f"{where} without {', '.join(missing)}, "
            "and a CW address needs street, postal code, city and country"
        )
    return {k: str(v) for k, v in parts.items()}
