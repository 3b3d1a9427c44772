"""The one I/O seam: the only module that imports httpx.

:class:`AsyncTransport` and :class:`SyncTransport` carry out the plan's
wire steps (:mod:`engine.protocol.plan`): ``send`` a
:class:`~engine.protocol.render.PreparedRequest` and read the whole answer
(:class:`RawResponse`), or ``open`` it and read the body chunk by chunk from
the returned :class:`AsyncOpened` / :class:`SyncOpened` (``read``,
``read_all``, a bounded ``drain``, ``close``). Every httpx exception is
translated into an :class:`EngineError` here (``timeout``, ``connection``,
``malformed_response``); nothing from httpx escapes. A transport owns its
``httpx`` client unless one was handed in, in which case closing the
transport leaves that client open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass

import httpx

from ..errors import EngineError, redact
from ..protocol.plan import Head, RawResponse
from ..protocol.render import PreparedRequest

__all__ = [
    "MAX_BODY_BYTES",
    "AsyncHttpClient",
    "AsyncOpened",
    "AsyncTransport",
    "Limits",
    "SyncHttpClient",
    "SyncOpened",
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


class AsyncOpened:
    """An open async response: its head, and the body still to be read."""

    def __init__(self, response: httpx.Response, provider: str | None,
                 deadline: _Deadline) -> None:
        self.head = Head(response.status_code, _headers(response))
        self._response = response
        self._provider = provider
        self._deadline = deadline
        self._chunks = response.aiter_bytes()

    async def read(self) -> bytes:
        """The next decoded chunk; ``b""`` at the end of the body."""
        try:
            return await asyncio.wait_for(self._chunks.__anext__(), self._deadline.left())
        except StopAsyncIteration:
            return b""
        except httpx.HTTPError as exc:
            raise _translate(exc, self._provider) from None
        except asyncio.TimeoutError:
            raise self._deadline.error(self._provider) from None

    async def read_all(self, limit: int) -> bytes:
        body = bytearray()
        while len(body) < limit:
            chunk = await self.read()
            if not chunk:
                break
            body += chunk
        return bytes(body[:limit])

    async def drain(self, max_bytes: int, seconds: float) -> None:
        """Read the rest within the bounds so the connection can be reused; never raises."""
        async def rest() -> None:
            size = 0
            async for chunk in self._chunks:
                size += len(chunk)
                if size > max_bytes:
                    return

        try:
            await asyncio.wait_for(rest(), seconds)
        except (asyncio.TimeoutError, httpx.HTTPError):
            return

    async def aclose(self) -> None:
        await self._response.aclose()


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
        opened = await self.open(req, provider)
        try:
            body = bytearray()
            while chunk := await opened.read():
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(opened.head.status, opened.head.headers, bytes(body))
        finally:
            await opened.aclose()

    async def open(self, req: PreparedRequest, provider: str | None = None) -> AsyncOpened:
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
        log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                  (time.monotonic() - started) * 1000.0)
        return AsyncOpened(response, provider, deadline)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()


class SyncOpened:
    """An open blocking response: its head, and the body still to be read."""

    def __init__(self, response: httpx.Response, provider: str | None,
                 deadline: _Deadline) -> None:
        self.head = Head(response.status_code, _headers(response))
        self._response = response
        self._provider = provider
        self._deadline = deadline
        self._chunks = response.iter_bytes()

    def read(self) -> bytes:
        """The next decoded chunk; ``b""`` at the end of the body."""
        try:
            chunk = next(self._chunks, b"")
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and self._deadline.left() == 0.0:
                raise self._deadline.error(self._provider) from None
            raise _translate(exc, self._provider) from None
        if chunk and self._deadline.left() == 0.0:
            raise self._deadline.error(self._provider)
        return chunk

    def read_all(self, limit: int) -> bytes:
        body = bytearray()
        while len(body) < limit:
            chunk = self.read()
            if not chunk:
                break
            body += chunk
        return bytes(body[:limit])

    def drain(self, max_bytes: int, seconds: float) -> None:
        """Read the rest within the bounds so the connection can be reused; never raises.

        A blocking read cannot be given a new time limit once the body started,
        so the rest is read by a worker; past *seconds* the socket is shut down
        under it and the connection is dropped instead of reused.
        """
        done = _drainer().submit(self._drain, max_bytes)
        try:
            done.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            self._abort()
            with contextlib.suppress(Exception):
                done.result(timeout=1.0)
        except Exception:  # a drain never fails the answer
            return

    def _drain(self, max_bytes: int) -> None:
        size = 0
        with contextlib.suppress(Exception):
            for chunk in self._chunks:
                size += len(chunk)
                if size > max_bytes:
                    return

    def _abort(self) -> None:
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._response.close()


_drain_pool: concurrent.futures.ThreadPoolExecutor | None = None
_drain_lock = threading.Lock()


def _drainer() -> concurrent.futures.ThreadPoolExecutor:
    global _drain_pool
    with _drain_lock:
        if _drain_pool is None:
            _drain_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="engine-drain")
        return _drain_pool


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
        opened = self.open(req, provider)
        try:
            body = bytearray()
            while chunk := opened.read():
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(opened.head.status, opened.head.headers, bytes(body))
        finally:
            opened.close()

    def open(self, req: PreparedRequest, provider: str | None = None) -> SyncOpened:
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
        log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                  (time.monotonic() - started) * 1000.0)
        return SyncOpened(response, provider, deadline)

    def close(self) -> None:
        if self._owned:
            self._client.close()
