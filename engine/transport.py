"""The one I/O seam: the only module that imports httpx.

:class:`AsyncTransport` and :class:`SyncTransport` send a
:class:`~engine.request.PreparedRequest` and return the status, lower-cased
headers and body (whole, or as an iterator of decoded byte chunks for
streams). Every httpx exception is translated into an :class:`EngineError`
here (``timeout``, ``connection``, ``malformed_response``); nothing from httpx
escapes. A transport owns its ``httpx`` client unless one was handed in, in
which case closing the transport leaves that client open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import EngineError, redact
from .request import PreparedRequest

__all__ = [
    "MAX_BODY_BYTES",
    "AsyncHttpClient",
    "AsyncTransport",
    "Limits",
    "RawResponse",
    "StreamHandle",
    "SyncHttpClient",
    "SyncTransport",
    "Timeouts",
]

log = logging.getLogger("engine")


class _Redacting(logging.Filter):
    """Removes registered secrets from httpx's own log lines (they print full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_Redacting())
AsyncHttpClient = httpx.AsyncClient  # what AiClient(http_client=...) accepts
SyncHttpClient = httpx.Client  # what SyncAiClient(http_client=...) accepts
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds, ``None`` for no limit.

    ``connect``: to open a connection; ``read``: the longest wait for the next
    bytes (a stream that stalls between events hits it); ``write``; ``pool``:
    to get a connection from the pool; ``total``: one whole attempt, from
    sending the request to the last byte of the answer. They apply to every
    request, also through a user-supplied ``http_client``. In the sync client
    ``total`` is checked between reads, each read waiting at most the time left.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 60.0
    pool: float | None = 10.0
    total: float | None = None

    @classmethod
    def of(cls, value: float | Timeouts | None) -> Timeouts:
        if isinstance(value, Timeouts):
            return value
        return cls(value, value, value, value)

    def to_httpx(self, remaining: float | None = None) -> httpx.Timeout:
        read = self.read
        if remaining is not None:
            read = remaining if read is None else min(read, remaining)
        return httpx.Timeout(connect=self.connect, read=read, write=self.write,
                             pool=self.pool)


class _Deadline:
    """The end of one attempt under ``Timeouts.total``."""

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.at = None if total is None else time.monotonic() + total

    def left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def error(self, provider: str | None) -> EngineError:
        return EngineError("timeout", f"total timeout of {self.total}s exceeded",
                           provider=provider)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bytes a response may make the client hold: a whole non-streamed body, one stream frame."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_frame_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_frame_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class StreamHandle:
    """An open response: status, headers and the body still to be read."""

    status: int
    headers: dict[str, str]
    chunks: Any  # AsyncIterator[bytes] or Iterator[bytes]


def _translate(exc: Exception, provider: str | None) -> EngineError:
    """The EngineError for an httpx (or socket) exception."""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, httpx.TimeoutException):
        return EngineError("timeout", f"{name}: {detail}", provider=provider)
    if isinstance(exc, httpx.DecodingError):
        return EngineError("malformed_response", f"cannot decode the body: {detail}",
                           provider=provider, retryable=False)
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return EngineError("invalid_request", f"bad URL: {detail}", provider=provider,
                           retryable=False)
    return EngineError("connection", f"{name}: {detail}", provider=provider)


def _headers(response: httpx.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in response.headers.multi_items():
        key = key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _build(client: httpx.AsyncClient | httpx.Client, req: PreparedRequest,
           timeout: httpx.Timeout) -> httpx.Request:
    return client.build_request(req.method, req.url, headers=list(req.headers), content=req.body,
                                timeout=timeout)


def _too_big(provider: str | None, limit: int) -> EngineError:
    return EngineError("malformed_response",
                       f"response body larger than {limit} bytes", provider=provider,
                       retryable=False)


class AsyncTransport:
    """Async HTTP via one pooled ``httpx.AsyncClient``."""

    def __init__(self, timeout: float | Timeouts | None = 60.0,
                 http_client: httpx.AsyncClient | None = None,
                 limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._owned = http_client is None
        self._timeouts = Timeouts.of(timeout)
        self._client = http_client or httpx.AsyncClient(timeout=self._timeouts.to_httpx())

    async def send(self, req: PreparedRequest, provider: str | None = None) -> RawResponse:
        async with self.open(req, provider) as handle:
            body = bytearray()
            async for chunk in handle.chunks:
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(handle.status, handle.headers, bytes(body))

    @asynccontextmanager
    async def open(self, req: PreparedRequest,
                   provider: str | None = None) -> AsyncIterator[StreamHandle]:
        log.debug("-> %s", req.describe())
        started = time.monotonic()
        deadline = _Deadline(self._timeouts.total)
        request = _build(self._client, req, self._timeouts.to_httpx())
        try:
            response = await asyncio.wait_for(self._client.send(request, stream=True),
                                               deadline.left())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _translate(exc, provider) from None
        except asyncio.TimeoutError:
            raise deadline.error(provider) from None
        try:
            log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                      (time.monotonic() - started) * 1000.0)
            yield StreamHandle(response.status_code, _headers(response),
                               self._chunks(response, provider, deadline))
        finally:
            await response.aclose()

    async def _chunks(self, response: httpx.Response, provider: str | None,
                      deadline: _Deadline) -> AsyncIterator[bytes]:
        chunks = response.aiter_bytes()
        try:
            if deadline.at is None:
                async for chunk in chunks:
                    yield chunk
                return
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), deadline.left())
                except StopAsyncIteration:
                    return
                yield chunk
        except httpx.HTTPError as exc:
            raise _translate(exc, provider) from None
        except asyncio.TimeoutError:
            raise deadline.error(provider) from None

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()


class SyncTransport:
    """Blocking HTTP via one pooled ``httpx.Client``."""

    def __init__(self, timeout: float | Timeouts | None = 60.0,
                 http_client: httpx.Client | None = None,
                 limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._owned = http_client is None
        self._timeouts = Timeouts.of(timeout)
        self._client = http_client or httpx.Client(timeout=self._timeouts.to_httpx())

    def send(self, req: PreparedRequest, provider: str | None = None) -> RawResponse:
        with self.open(req, provider) as handle:
            body = bytearray()
            for chunk in handle.chunks:
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(handle.status, handle.headers, bytes(body))

    @contextmanager
    def open(self, req: PreparedRequest, provider: str | None = None) -> Iterator[StreamHandle]:
        log.debug("-> %s", req.describe())
        started = time.monotonic()
        deadline = _Deadline(self._timeouts.total)
        request = _build(self._client, req, self._timeouts.to_httpx(deadline.left()))
        try:
            response = self._client.send(request, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if isinstance(exc, httpx.TimeoutException) and deadline.left() == 0.0:
                raise deadline.error(provider) from None
            raise _translate(exc, provider) from None
        try:
            log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                      (time.monotonic() - started) * 1000.0)
            yield StreamHandle(response.status_code, _headers(response),
                               self._chunks(response, provider, deadline))
        finally:
            response.close()

    def _chunks(self, response: httpx.Response, provider: str | None,
                deadline: _Deadline) -> Iterator[bytes]:
        try:
            for chunk in response.iter_bytes():
                if deadline.left() == 0.0:
                    raise deadline.error(provider)
                yield chunk
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and deadline.left() == 0.0:
                raise deadline.error(provider) from None
            raise _translate(exc, provider) from None

    def close(self) -> None:
        if self._owned:
            self._client.close()
