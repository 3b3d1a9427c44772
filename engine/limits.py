"""Time and resource limits of a client, as validated plain data. Pure.

:class:`Timeouts` bounds waiting (connect, read, write, pool, one whole
attempt); :class:`Limits` bounds what a response may make the client hold and
how many requests a client has on the wire at once. Both check their fields
when built, so a wrong value fails at ``create`` with an ``invalid_request``
:class:`~engine.errors.EngineError` naming the field, never later inside the
HTTP stack. The transport (:mod:`engine.io.transport`) applies them.

Defaults follow the official provider SDKs: a generation may take minutes, so
``read`` waits 600 s; a server that does not accept the connection within 5 s
is not going to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import EngineError

__all__ = ["DEFAULT_TIMEOUTS", "MAX_BODY_BYTES", "Limits", "Timeouts"]

MAX_BODY_BYTES = 32 * 1024 * 1024


def _bad(name: str, value: Any, accepted: str) -> EngineError:
    return EngineError("invalid_request", f"{name} must be {accepted}, got "
                       f"{type(value).__name__} {value!r:.80}", retryable=False)


def seconds(name: str, value: Any) -> float | None:
    """A timeout in seconds: a finite number > 0, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, "a number of seconds or None")
    if not math.isfinite(value) or value <= 0:
        raise _bad(name, value, "a finite number of seconds > 0, or None")
    return float(value)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds, ``None`` for no limit.

    ``connect``: to open a connection; ``read``: the longest wait for the next
    bytes, and in a stream the longest pause between two events (keep-alive
    comments do not count as events); ``write``: to send the request;
    ``pool``: to get a connection from the pool; ``total``: one whole attempt,
    from sending the request to the last byte of the answer (also while the
    response headers arrive). Connect and pool timeouts are retried (nothing
    reached the model); a read or total timeout is not, because the provider
    may be generating, and billing, the answer.
    """

    connect: float | None = 5.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 10.0
    total: float | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            object.__setattr__(self, spec.name,
                               seconds(f"timeout {spec.name}", getattr(self, spec.name)))

    @classmethod
    def of(cls, value: Any) -> Timeouts:
        """``Timeouts`` as given; a number caps every phase but ``total``; None: no limits."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(None, None, None, None)
        limit = seconds("timeout", value)
        return cls(limit, limit, limit, limit)


DEFAULT_TIMEOUTS = Timeouts()


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, value, f"an int >= {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may hold and have in flight.

    ``max_body_bytes``: a whole non-streamed body, after decompression;
    ``max_frame_bytes``: one stream frame; ``max_in_flight``: requests (and
    open streams) on the wire at once; a call beyond it waits, first come
    first served, for one to finish (the wait counts toward ``total`` but not
    toward the ``pool`` timeout); ``max_connections``: the pool's size;
    ``max_idle_connections``: how many of them the httpx transport keeps open
    between calls (httpx's own default; its pool checks every idle connection
    for each request, so 100 idle ones made 200 concurrent calls six times
    slower; the aiohttp transport keeps them all, its pool has no such cost).
    """

    max_body_bytes: int = MAX_BODY_BYTES
    max_frame_bytes: int = 16 * 1024 * 1024
    max_in_flight: int = 100
    max_connections: int = 100
    max_idle_connections: int = 20

    def __post_init__(self) -> None:
        for spec in fields(self):
            _count(spec.name, getattr(self, spec.name))
