"""Development tools, apart from the product: the demo, the benchmark, synthetic events, a fake CW.

The running service never imports this package (an import-linter contract says so); only the CLI's
development commands (``cwi demo``, ``cwi bench``, ``cwi sandbox``) load it, on first use, and the tests
use it. The sandbox ERP itself stays in ``providers/generic_rest/sandbox``: it is the reference
implementation of CW's generic REST interface.
"""

MAX_EVENTS = 10_000_000
"""Events one benchmark run makes at most (``cwi bench --events``, the load generators in ``bench/``)."""
MAX_LATENCY_MS = 60_000.0
"""The sandbox ERP's added latency at most (``cwi sandbox``/``cwi bench --latency-ms``, ``bench/``)."""
MAX_CLIENTS = 100_000
"""Distinct clients of one benchmark run at most (``cwi bench --clients``, ``bench/sb_bare.py``)."""
