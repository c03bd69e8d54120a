"""The Contracting Works integration worker."""

import sys

# structlog's development renderer imports rich's traceback module (and with it pygments: about
# 3 MB of a worker's memory, 50 ms of every command's start) when rich is installed, for tracebacks
# we never print (errors are one line). rich is hidden from structlog's import only: typer and our
# tables load it as usual. structlog has no option for this; its fallback is the plain traceback.
if "structlog" not in sys.modules:
    _rich = sys.modules.pop("rich", None)
    sys.modules["rich"] = None  # type: ignore[assignment]  # an import of rich now fails
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]
        if _rich is not None:
            sys.modules["rich"] = _rich
