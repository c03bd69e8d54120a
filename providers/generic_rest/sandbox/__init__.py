"""The sandbox ERP: CW's reference implementation of contracts/generic_rest.openapi.json.

Used by the demo, the benchmarks and the tests. Records live in memory (or a SQLite file), every
request is checked against the interface document, and a control API under ``/_sandbox``
injects failures and reports what happened.
"""

from providers.generic_rest.sandbox.app import Sandbox
from providers.generic_rest.sandbox.server import SANDBOX, SandboxServer, create_app, run_sandbox

__all__ = ["SANDBOX", "Sandbox", "SandboxServer", "create_app", "run_sandbox"]
