"""A request's body, read no further than a bound: the webhook listener's and the admin API's.

The ASGI server reads whatever a client sends, and Starlette's ``request.body()`` holds it whole.
Not Starlette's ``max_body_size`` either: under the admin API's key check (a BaseHTTPMiddleware)
its refusal of a chunked body ends in a 500.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is over ``limit`` bytes; ``size`` when its Content-Length said so."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.size = size


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a lying or absent Content-Length included)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
