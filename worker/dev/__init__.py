"""Development tools, apart from the product: the demo, the benchmark, synthetic events, a fake CW.

The running service never imports this package (an import-linter contract says so); only the CLI's
development commands (``cwi demo``, ``cwi bench``, ``cwi sandbox``) load it, on first use, and the tests
use it. The sandbox ERP itself stays in ``providers/generic_rest/sandbox``: it is the reference
implementation of CW's generic REST interface.
"""
