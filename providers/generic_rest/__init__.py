"""The generic REST provider: ERPs that implement CW's own interface, contracts/generic_rest.openapi.json.

The sandbox ERP (``providers.generic_rest.sandbox``) is imported on its own, so that the worker
does not load jsonschema unless it serves the sandbox.
"""

from providers.generic_rest.provider import GenericRestProvider

__all__ = ["GenericRestProvider"]
