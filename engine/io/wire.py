"""The async transport interface the drivers use, whatever HTTP stack is under it.

:class:`AsyncWire` is what :mod:`engine.io.drivers` and the client need of
an async transport: ``send`` a :class:`~engine.protocol.render.PreparedRequest`
and read the whole answer, or ``open`` it and read the body through an
:class:`AsyncResponse`. Two implementations keep the same invariants (every
exception of the stack becomes an :class:`~engine.errors.EngineError`, no
redirect is followed, bodies are decoded in bounded pieces, at most
``Limits.max_in_flight`` requests are on the wire): the default httpx one
(:mod:`engine.io.transport`) and the optional aiohttp one
(:mod:`engine.io.aiohttp`, ``AiClient.create(..., transport="aiohttp")``).
No HTTP library is imported here.
"""

from __future__ import annotations

from typing import Protocol

from ..limits import Limits, Timeouts
from ..protocol.plan import Head, RawResponse
from ..protocol.render import PreparedRequest

__all__ = ["TRANSPORTS", "AsyncResponse", "AsyncWire"]

# The names AiClient.create(transport=...) accepts.
TRANSPORTS = ("httpx", "aiohttp")


class AsyncResponse(Protocol):
    """An open response: its head, and the decoded body still to be read."""

    head: Head

    async def read(self) -> bytes:
        """The next decoded piece; ``b""`` at the end of the body."""

    async def read_all(self, limit: int) -> bytes:
        """The rest of the body, at most *limit* bytes."""

    async def drain(self, max_bytes: int, seconds: float) -> None:
        """Read the rest within the bounds so the connection can be reused; never raises."""

    async def aclose(self) -> None:
        """Release the response (the connection goes back to the pool, or is closed)."""


class AsyncWire(Protocol):
    """An async transport: one pool of connections for every call of a client."""

    timeouts: Timeouts
    limits: Limits

    async def send(self, req: PreparedRequest, provider: str | None = None,
                   timeouts: Timeouts | None = None) -> RawResponse:
        """Send *req* and read its whole answer."""

    async def open(self, req: PreparedRequest, provider: str | None = None,
                   timeouts: Timeouts | None = None) -> AsyncResponse:
        """Send *req* and return its response once the head arrived."""

    async def aclose(self) -> None:
        """Close the pool (a handed-in client is left open)."""
