"""Benchmark: reconcile N customers per side, CW (the fake CW) against an ERP (the sandbox, or the
Tripletex fake), each in a process of its own; prints one JSON object.

    .venv/bin/python bench/reconcile.py [--records 10000] [--erp generic_rest|tripletex] [--drift 100]

``--drift`` of the ERP's records differ from CW's (a name changed there). A full run reads and
compares everything; an incremental run right after reads only what changed since (nothing) and the
records found out of step (one ERP read each). The figures: seconds, records/s of the full run
(records per side / seconds) and the ERP requests each run used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CW_KEY = "bench-cw-key"
TOKEN = "bench-erp-token"  # noqa: S105 - the local sandbox's token
ADDRESS = {"street": "Storgata 1", "postal_code": "0155", "city": "Oslo", "country": "NO"}


def _customer(n: int, drifted: bool = False) -> dict[str, Any]:
    return {
        "id": f"c-{n}",
        "number": str(100000 + n),
        "name": f"Customer {n} AS" + (" (renamed in the ERP)" if drifted else ""),
        "email": f"post{n}@example.no",
        "address": ADDRESS,
    }


# -- the two servers, each in its own process ------------------------------------------------------


async def _serve_cw(port: int, records: int) -> None:
    from contracts import Entity
    from worker.dev.cw_sandbox import CWServer

    server = CWServer(api_key=CW_KEY)
    for n in range(records):
        server.cw.seed("bench", Entity.customer, _customer(n))
    await _serve(server.app, port)


async def _serve_erp(kind: str, port: int, records: int, drift: int) -> None:
    if kind == "generic_rest":
        from providers.generic_rest.sandbox.server import create_app
        from providers.generic_rest.sandbox.store import StoredRecord

        app = create_app(token=TOKEN, latency_ms=0, fail_rate=0, seed=None, db_path=None)
        sandbox = next(v for v in app.values() if hasattr(v, "store"))
        for n in range(records):
            data = _customer(n, n < drift)
            sandbox.save(
                StoredRecord("customer", data["id"], sandbox.store.next_external_id("customer"), 1, data)
            )
        await _serve(app, port)
        return
    from tests.fakes.tripletex import COUNTRIES, FakeTripletex

    fake = FakeTripletex()
    for n in range(records):
        data = _customer(n, n < drift)
        address = {"addressLine1": "Storgata 1", "postalCode": "0155", "city": "Oslo"}
        fake.add(
            "customer",
            {
                "name": data["name"],
                "customerNumber": int(data["number"]),
                "email": data["email"],
                "postalAddress": {**address, "country": {"id": COUNTRIES["NO"]}},
            },
        )
    fake.base_url = f"http://127.0.0.1:{port}/v2"
    await _serve(fake.app(), port)


async def _serve(app: Any, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- the benchmark -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(*args: str) -> Iterator[int]:
    port = _free_port()
    cmd = [sys.executable, __file__, *args, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{' '.join(args)} did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _reconcile(db_url: str, erp_kind: str, erp_url: str, cw_url: str) -> dict[str, Any]:
    import aiohttp

    from config_db import clients
    from config_db.database import make_engine
    from config_db.migrate import upgrade
    from config_db.secrets import SecretBox
    from contracts import Entity
    from providers import registry
    from providers.base import ConnectionSpec
    from tests.fakes.tripletex import CONSUMER_TOKEN, EMPLOYEE_TOKEN
    from worker.cw.http import HttpCW
    from worker.db import Database
    from worker.reconcile.run import Options, Reconciler
    from worker.reconcile.sides import CWReader, ReconcilingProvider

    engine = make_engine(db_url)
    upgrade(engine)
    credentials = {"token": TOKEN}
    if erp_kind == "tripletex":
        credentials = {"consumer_token": CONSUMER_TOKEN, "employee_token": EMPLOYEE_TOKEN}
    with engine.begin() as conn:
        clients.add_client(conn, "bench", "Bench")
        box = SecretBox("bench-secret-key")
        stored = clients.StoredConnection("bench", erp_kind, erp_url, {}, box.encrypt(credentials), True)
        clients.set_connection(conn, stored)
    spec = ConnectionSpec("bench", erp_kind, erp_url, {}, credentials)
    db = Database(engine)
    runs = {}
    async with aiohttp.ClientSession() as http:
        cw = HttpCW(http, graphql_url=f"{cw_url}/graphql", write_url=f"{cw_url}/write", api_key=CW_KEY)
        provider = cast(ReconcilingProvider, registry.build(spec, http))
        for mode, full in (("full", True), ("incremental", False)):
            reconciler = Reconciler(db, cast(CWReader, cw), spec, provider)
            started = time.perf_counter()
            report = await reconciler.run(Options(entities=(Entity.customer,), full=full))
            seconds = time.perf_counter() - started
            [entity] = report.entities
            runs[mode] = {
                "seconds": round(seconds, 3),
                "read": {"cw": entity.cw_read, "erp": entity.erp_read},
                "erp_requests": report.erp_requests,
                "drift": report.drift,
            }
            if full:
                runs[mode]["records_per_s"] = round(max(entity.cw_read, entity.erp_read) / seconds, 1)
    await db.close()
    return runs


def main() -> None:
    from bench.options import whole

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "serve-cw", "serve-erp"])
    parser.add_argument("--records", type=whole(1, 1_000_000), default=10_000)
    parser.add_argument("--erp", default="generic_rest", choices=["generic_rest", "tripletex"])
    parser.add_argument("--drift", type=whole(0, 1_000_000), default=100)
    parser.add_argument("--port", type=whole(0, 65_535), default=0)
    args = parser.parse_args()
    if args.drift > args.records:
        parser.error(f"--drift: at most --records ({args.records}), not {args.drift}")
    if args.role == "serve-cw":
        asyncio.run(_serve_cw(args.port, args.records))
        return
    if args.role == "serve-erp":
        asyncio.run(_serve_erp(args.erp, args.port, args.records, args.drift))
        return
    common = ["--records", str(args.records)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _process("serve-cw", *common) as cw_port,
        _process("serve-erp", *common, "--erp", args.erp, "--drift", str(args.drift)) as erp_port,
    ):
        erp_url = f"http://127.0.0.1:{erp_port}" + ("/v2" if args.erp == "tripletex" else "")
        runs = asyncio.run(
            _reconcile(f"sqlite:///{tmp}/cwi.db", args.erp, erp_url, f"http://127.0.0.1:{cw_port}")
        )
    print(json.dumps({"records": args.records, "erp": args.erp, "drift": args.drift, **runs}))


if __name__ == "__main__":
    main()
