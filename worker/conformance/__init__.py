"""The conformance kit of the generic REST interface (``cwi conformance``).

Checks any endpoint against contracts/generic_rest.openapi.json: schemathesis drives the
schema-based part (every operation, status code and answer schema, generated cases); our own
stateful checks cover what a schema cannot say (idempotent replay and key reuse, 404 semantics,
versions, listing cursors under concurrent writes, 429 with Retry-After, webhook signatures).
The result is a report an integrator can act on: each failure with the request, the answer and
the rule of the document it breaks.

Needs the ``conformance`` extra (schemathesis): ``pip install 'cwi[conformance]'``.
"""

from worker.conformance.report import CheckResult, Exchange, Finding, Report

__all__ = ["CheckResult", "Exchange", "Finding", "Report"]
