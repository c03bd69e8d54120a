"""Synthetic CW events for the demo and the benchmark (deterministic for a given seed)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def org_number(rng: random.Random, *, valid: bool = True) -> str:
    """A 9-digit Norwegian organisation number; valid ones pass the mod-11 check."""
    weights = (3, 2, 7, 6, 5, 4, 3, 2)
    while True:
        digits = [rng.randint(0, 9) for _ in range(8)]
        digits[0] = rng.randint(8, 9)
        remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        check = 0 if remainder == 0 else 11 - remainder
        if check == 10:
            continue
        if not valid:
            check = (check + 1) % 10
        return "".join(map(str, digits)) + str(check)


def envelope(
    client_id: str, type_: str, data: dict[str, Any] | None, *, seq: int, **extra: Any
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": str(uuid.UUID(int=random.Random(f"{client_id}/{seq}").getrandbits(128))),
        "client_id": client_id,
        "type": type_,
        "source": "frontend",
        "occurred_at": (T0 + dt.timedelta(seconds=seq)).isoformat().replace("+00:00", "Z"),
    }
    if data is not None:
        env["data"] = data
    env.update(extra)
    return env


def customer(client_id: str, n: int, rng: random.Random, *, valid_org: bool = True) -> dict[str, Any]:
    return {
        "id": f"{client_id}-cus-{n}",
        "number": str(10000 + n),
        "name": f"Customer {n} AS",
        "org_number": org_number(rng, valid=valid_org),
        "email": f"post{n}@example.no",
        "address": {"street": f"Storgata {n}", "postal_code": "0155", "city": "Oslo", "country": "NO"},
    }


def supplier(client_id: str, n: int, rng: random.Random) -> dict[str, Any]:
    return {"id": f"{client_id}-sup-{n}", "number": str(50000 + n), "name": f"Supplier {n} AS"}


def project(client_id: str, n: int, customer_n: int) -> dict[str, Any]:
    return {
        "id": f"{client_id}-prj-{n}",
        "number": f"P{n}",
        "name": f"Project {n}",
        "customer_id": f"{client_id}-cus-{customer_n}",
        "start_date": "2026-01-01",
    }


def invoice(
    client_id: str, n: int, customer_n: int, rng: random.Random, *, currency: str = "NOK"
) -> dict[str, Any]:
    lines = [
        {
            "description": f"Work item {i}",
            "quantity": str(rng.randint(1, 20)),
            "unit_price": f"{rng.randint(100, 2000)}.00",
            "vat_rate": rng.choice(["25", "15", "0"]),
        }
        for i in range(rng.randint(1, 4))
    ]
    return {
        "id": f"{client_id}-inv-{n}",
        "number": str(20000 + n),
        "customer_id": f"{client_id}-cus-{customer_n}",
        "customer_number": str(10000 + customer_n),
        "invoice_date": "2026-11-20",
        "due_date": "2026-12-04",
        "currency": currency,
        "lines": lines,
    }
