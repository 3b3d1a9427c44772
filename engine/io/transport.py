"""The one I/O seam: the only module that imports httpx.

:class:`AsyncTransport` and :class:`SyncTransport` carry out the plan's
wire steps (:mod:`engine.protocol.plan`): ``send`` a
:class:`~engine.protocol.render.PreparedRequest` and read the whole answer
(:class:`RawResponse`), or ``open`` it and read the body chunk by chunk from
the returned :class:`AsyncOpened` / :class:`SyncOpened` (``read``,
``read_all``, a bounded ``drain``, ``close``).

Invariants, whatever the ``httpx`` client (owned, or handed in by the user):

- every exception of the HTTP stack becomes an :class:`EngineError` here
  (``timeout``, ``connection``, ``invalid_request``, ``malformed_response``);
- redirects are never followed (a key must not reach another origin); the
  plan turns a 3xx into an error;
- bodies are decoded by :mod:`engine.io.encoding` in bounded pieces, so a
  compression bomb stops at the reader's limit;
- at most ``Limits.max_in_flight`` requests of one transport are on the
  wire; the others wait in arrival order;
- log records of httpx and httpcore (every logger under them) are redacted.

A transport owns its ``httpx`` client unless one was handed in, in which
case closing the transport leaves that client open.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import EngineError, redact
from ..limits import DEFAULT_TIMEOUTS, MAX_BODY_BYTES, Limits, Timeouts
from ..protocol.plan import Head, RawResponse
from ..protocol.render import PreparedRequest
from .encoding import BodyDecoder, accept_encoding

if TYPE_CHECKING:  # imported where used: a sync client loads neither
    import asyncio
    import concurrent.futures

__all__ = [
    "MAX_BODY_BYTES",
    "AsyncHttpClient",
    "AsyncOpened",
    "AsyncTransport",
    "Capture",
    "Limits",
    "SyncHttpClient",
    "SyncOpened",
    "SyncTransport",
    "Timeouts",
    "capturing_client",
]

log = logging.getLogger("engine")
AsyncHttpClient = httpx.AsyncClient  # what AiClient(http_client=...) accepts
SyncHttpClient = httpx.Client  # what SyncAiClient(http_client=...) accepts


# ---------------------------------------------------------------- logging

class _Redacting(logging.Filter):
    """Removes registered secrets from the HTTP stack's log lines (they print full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_FILTER = _Redacting()
# A logger's filters do not apply to records of its children, so each logger
# under these roots gets the filter: the ones httpcore names, and any existing.
_LOG_ROOTS = ("httpx", "httpcore")
_KNOWN_LOGGERS = ("httpcore.connection", "httpcore.connection_pool", "httpcore.http11",
                  "httpcore.http2", "httpcore.proxy", "httpcore.socks")


def _install_log_filters() -> None:
    names = [*_LOG_ROOTS, *_KNOWN_LOGGERS, *list(logging.root.manager.loggerDict)]
    for name in names:
        if name in _LOG_ROOTS or name.startswith(tuple(r + "." for r in _LOG_ROOTS)):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


_install_log_filters()


# ---------------------------------------------------------------- helpers

def _httpx_timeout(timeouts: Timeouts, remaining: float | None = None) -> httpx.Timeout:
    def cap(value: float | None) -> float | None:
        if remaining is None:
            return value
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(connect=cap(timeouts.connect), read=cap(timeouts.read),
                         write=cap(timeouts.write), pool=cap(timeouts.pool))


class _Deadline:
    """The end of one attempt under ``Timeouts.total``."""

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.at = None if total is None else time.monotonic() + total

    def left(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def error(self, provider: str | None) -> EngineError:
        return EngineError("timeout", f"total timeout of {self.total}s exceeded; the request "
                           f"was not retried, since the provider may be generating (and "
                           f"billing) the answer: use .stream(), or a larger timeout=",
                           provider=provider, retryable=False)


_READ_ADVICE = ("not retried, since the provider may still be generating (and billing) the "
                "answer; use .stream() to receive it as it is produced, or a larger timeout=")


def _timeout_error(exc: httpx.TimeoutException, timeouts: Timeouts,
                   provider: str | None) -> EngineError:
    if isinstance(exc, httpx.ConnectTimeout):
        return EngineError("timeout", f"no connection within the connect timeout of "
                           f"{timeouts.connect}s", provider=provider)
    if isinstance(exc, httpx.PoolTimeout):
        return EngineError("timeout", f"no free connection within the pool timeout of "
                           f"{timeouts.pool}s", provider=provider)
    if isinstance(exc, httpx.WriteTimeout):
        return EngineError("timeout", f"the request was not sent within the write timeout "
                           f"of {timeouts.write}s", provider=provider)
    return EngineError("timeout", f"no data within the read timeout of {timeouts.read}s; "
                       + _READ_ADVICE, provider=provider, retryable=False)


def _translate(exc: Exception, timeouts: Timeouts, provider: str | None) -> EngineError:
    """The EngineError for an exception of the HTTP stack."""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, httpx.TimeoutException):
        return _timeout_error(exc, timeouts, provider)
    if isinstance(exc, httpx.DecodingError):
        return EngineError("malformed_response", f"cannot decode the body: {detail}",
                           provider=provider, retryable=False)
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return EngineError("invalid_request", f"bad URL: {detail}", provider=provider,
                           retryable=False)
    if isinstance(exc, httpx.LocalProtocolError):
        # Nothing was sent: the request itself cannot be written; a retry fails the same way.
        return EngineError("invalid_request", f"the request could not be sent: {detail}",
                           provider=provider, retryable=False)
    if isinstance(exc, (UnicodeError, ValueError)):
        return EngineError("invalid_request", f"the request could not be sent: {name}",
                           provider=provider, retryable=False)
    return EngineError("connection", f"{name}: {detail}", provider=provider)


def _closed_error(provider: str | None) -> EngineError:
    return EngineError("invalid_request", "the client is closed; create a new one",
                       provider=provider, retryable=False)


def _runtime_error(exc: RuntimeError, provider: str | None) -> EngineError:
    text = str(exc)
    if "closed" in text and "client" in text:
        return _closed_error(provider)
    return EngineError("invalid_request", f"the HTTP client cannot be used here: {text}",
                       provider=provider, retryable=False)


def _headers(response: httpx.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in response.headers.multi_items():
        key = key.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _build(client: httpx.AsyncClient | httpx.Client, req: PreparedRequest,
           timeout: httpx.Timeout, provider: str | None, timeouts: Timeouts) -> httpx.Request:
    headers = list(req.headers)
    if not any(name == "accept-encoding" for name, _ in headers):
        headers.append(("accept-encoding", accept_encoding()))
    try:
        return client.build_request(req.method, req.url, headers=headers, content=req.body,
                                    timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise _translate(exc, timeouts, provider) from None
    except RuntimeError as exc:
        raise _runtime_error(exc, provider) from None


def _too_big(provider: str | None, limit: int) -> EngineError:
    return EngineError("malformed_response",
                       f"response body larger than {limit} bytes", provider=provider,
                       retryable=False)


def _pool(limits: Limits) -> httpx.Limits:
    return httpx.Limits(max_connections=limits.max_connections,
                        max_keepalive_connections=min(limits.max_idle_connections,
                                                      limits.max_connections))


def _new_client(kind: type[Any], timeouts: Timeouts, limits: Limits) -> Any:
    try:
        return kind(timeout=_httpx_timeout(timeouts), limits=_pool(limits),
                    follow_redirects=False)
    except ImportError as exc:
        raise EngineError("invalid_request", f"the HTTP client needs a package that is not "
                          f"installed ({exc}); a SOCKS proxy in the environment (ALL_PROXY) "
                          f"needs: pip install 'httpx[socks]'", retryable=False) from None
    except (ValueError, TypeError, httpx.InvalidURL) as exc:
        raise EngineError("invalid_request", f"the HTTP client cannot be configured from the "
                          f"environment (a proxy variable?): {exc}", retryable=False) from None


def _check_client(client: Any, kind: type[Any], what: str) -> None:
    if client is not None and not isinstance(client, kind):
        raise EngineError("invalid_request", f"http_client must be an {kind.__module__}."
                          f"{kind.__name__} for {what}, got {type(client).__name__}",
                          retryable=False)


def _preread(response: httpx.Response) -> bool:
    # A response built in memory (httpx.MockTransport, a user's own transport) has been
    # read, and decoded, by httpx already; one from the network never has.
    return response.is_stream_consumed


async def _aiter_once(data: bytes) -> Any:
    yield data


class _Body:
    """The decoded body of one response, pulled in bounded pieces. Shared by both modes."""

    def __init__(self, response: httpx.Response) -> None:
        coding = None if _preread(response) else response.headers.get("content-encoding")
        self.decoder = BodyDecoder(coding)
        # Network reads of an uncoded body are already bounded (the HTTP stack reads at
        # most 64 KiB at a time): they pass through as they are.
        self.passthrough = not _preread(response) and self.decoder.identity
        self.pending: Iterator[bytes] = iter(())
        self.finished = False

    def next_piece(self) -> bytes | None:
        """A ready piece, or None when raw bytes are needed."""
        return next(self.pending, None)

    def feed(self, raw: bytes | None) -> None:
        """Raw bytes, or None at the end of the raw body."""
        if raw is None:
            self.finished = True
            self.pending = self.decoder.finish()
        else:
            self.pending = self.decoder.feed(raw)


# ---------------------------------------------------------------- async

class AsyncOpened:
    """An open async response: its head, and the body still to be read."""

    def __init__(self, response: httpx.Response, provider: str | None, deadline: _Deadline,
                 timeouts: Timeouts, release: Any) -> None:
        self.head = Head(response.status_code, _headers(response))
        self._response = response
        self._provider = provider
        self._deadline = deadline
        self._timeouts = timeouts
        self._raw = _aiter_once(response.content) if _preread(response) else response.aiter_raw()
        self._body = _Body(response)
        self._release = release

    async def _next_raw(self) -> bytes | None:
        import asyncio
        try:
            return await asyncio.wait_for(self._raw.__anext__(), self._deadline.left())
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as exc:
            raise _translate(exc, self._timeouts, self._provider) from None
        except asyncio.TimeoutError:
            raise self._deadline.error(self._provider) from None

    async def read(self) -> bytes:
        """The next decoded piece; ``b""`` at the end of the body."""
        if self._body.passthrough:
            while (raw := await self._next_raw()) == b"":
                pass
            return raw or b""
        while True:
            piece = self._body.next_piece()
            if piece:
                return piece
            if self._body.finished:
                return b""
            self._body.feed(await self._next_raw())

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
        import asyncio
        async def rest() -> None:
            size = 0
            async for chunk in self._raw:
                size += len(chunk)
                if size > max_bytes:
                    return

        try:
            await asyncio.wait_for(rest(), seconds)
        except (asyncio.TimeoutError, httpx.HTTPError, RuntimeError):
            return

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            await self._response.aclose()
        except (httpx.HTTPError, RuntimeError):  # closing never fails the answer
            pass
        finally:
            if release is not None:
                release()


class AsyncTransport:
    """Async HTTP via one pooled ``httpx.AsyncClient``."""

    def __init__(self, timeout: float | Timeouts | None = DEFAULT_TIMEOUTS,
                 http_client: httpx.AsyncClient | None = None,
                 limits: Limits | None = None) -> None:
        _check_client(http_client, httpx.AsyncClient, "AiClient")
        _install_log_filters()
        self.limits = limits or Limits()
        self.timeouts = Timeouts.of(timeout)
        self._owned = http_client is None
        self._client = http_client or _new_client(httpx.AsyncClient, self.timeouts, self.limits)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    def _bind_loop(self, provider: str | None) -> asyncio.Semaphore:
        """The in-flight slots of the running loop; a new loop gets a fresh owned pool."""
        import asyncio
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            if self._loop is not None:
                if not self._owned:
                    raise EngineError("invalid_request", "the http_client handed to this "
                                      "client belongs to another event loop; create the "
                                      "client inside the loop that uses it",
                                      provider=provider, retryable=False)
                # The old pool's connections belong to a loop that is gone: drop them.
                self._client = _new_client(httpx.AsyncClient, self.timeouts, self.limits)
            self._loop = loop
            self._slots = asyncio.Semaphore(self.limits.max_in_flight)
        return self._slots

    async def send(self, req: PreparedRequest, provider: str | None = None,
                   timeouts: Timeouts | None = None) -> RawResponse:
        opened = await self.open(req, provider, timeouts)
        try:
            body = bytearray()
            while chunk := await opened.read():
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(opened.head.status, opened.head.headers, bytes(body))
        finally:
            await opened.aclose()

    async def open(self, req: PreparedRequest, provider: str | None = None,
                   timeouts: Timeouts | None = None) -> AsyncOpened:
        import asyncio
        if self._closed:
            raise _closed_error(provider)
        limits = timeouts or self.timeouts
        deadline = _Deadline(limits.total)
        slots = self._bind_loop(provider)
        try:
            await asyncio.wait_for(slots.acquire(), deadline.left())
        except asyncio.TimeoutError:
            raise deadline.error(provider) from None
        try:
            return await self._open(req, provider, limits, deadline, slots)
        except BaseException:
            slots.release()
            raise

    async def _open(self, req: PreparedRequest, provider: str | None, timeouts: Timeouts,
                    deadline: _Deadline, slots: asyncio.Semaphore) -> AsyncOpened:
        import asyncio
        log.debug("-> %s", req.describe())
        started = time.monotonic()
        request = _build(self._client, req, _httpx_timeout(timeouts), provider, timeouts)
        try:
            response = await asyncio.wait_for(
                self._client.send(request, stream=True, follow_redirects=False),
                deadline.left())
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
            raise _translate(exc, timeouts, provider) from None
        except RuntimeError as exc:
            raise _runtime_error(exc, provider) from None
        except asyncio.TimeoutError:
            raise deadline.error(provider) from None
        log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                  (time.monotonic() - started) * 1000.0)
        try:
            return AsyncOpened(response, provider, deadline, timeouts, slots.release)
        except EngineError:
            await response.aclose()
            raise

    async def aclose(self) -> None:
        self._closed = True
        if self._owned:
            with contextlib.suppress(RuntimeError):  # a loop already gone
                await self._client.aclose()


# ---------------------------------------------------------------- sync

class SyncOpened:
    """An open blocking response: its head, and the body still to be read."""

    def __init__(self, response: httpx.Response, provider: str | None, deadline: _Deadline,
                 timeouts: Timeouts, release: Any) -> None:
        self.head = Head(response.status_code, _headers(response))
        self._response = response
        self._provider = provider
        self._deadline = deadline
        self._timeouts = timeouts
        self._raw = iter([response.content]) if _preread(response) else response.iter_raw()
        self._body = _Body(response)
        self._release = release

    def _next_raw(self) -> bytes | None:
        try:
            chunk = next(self._raw, None)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and self._deadline.expired():
                raise self._deadline.error(self._provider) from None
            raise _translate(exc, self._timeouts, self._provider) from None
        if chunk is not None and self._deadline.expired():
            raise self._deadline.error(self._provider)
        return chunk

    def read(self) -> bytes:
        """The next decoded piece; ``b""`` at the end of the body."""
        if self._body.passthrough:
            while (raw := self._next_raw()) == b"":
                pass
            return raw or b""
        while True:
            piece = self._body.next_piece()
            if piece:
                return piece
            if self._body.finished:
                return b""
            self._body.feed(self._next_raw())

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
        import concurrent.futures
        done = _workers().submit(self._drain, max_bytes)
        try:
            done.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            _shutdown(self._response)
            with contextlib.suppress(Exception):
                done.result(timeout=1.0)
        except Exception:  # a drain never fails the answer
            return

    def _drain(self, max_bytes: int) -> None:
        size = 0
        with contextlib.suppress(Exception):
            for chunk in self._raw:
                size += len(chunk)
                if size > max_bytes:
                    return

    def close(self) -> None:
        release, self._release = self._release, None
        try:
            self._response.close()
        except (httpx.HTTPError, RuntimeError):  # closing never fails the answer
            pass
        finally:
            if release is not None:
                release()


def _shutdown(response: httpx.Response) -> None:
    """Shut the response's socket down under a blocked reader (it then fails at once)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_worker_pool: concurrent.futures.ThreadPoolExecutor | None = None
_worker_lock = threading.Lock()


def _workers() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for the blocking waits that need a time limit (drains, ``total``)."""
    import concurrent.futures
    global _worker_pool
    with _worker_lock:
        if _worker_pool is None:
            _worker_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=32, thread_name_prefix="engine-io")
        return _worker_pool


def _close_late(done: concurrent.futures.Future[httpx.Response]) -> None:
    """The response of a send given up on (``total`` passed) is closed when it arrives."""
    with contextlib.suppress(Exception):
        done.result().close()


class SyncTransport:
    """Blocking HTTP via one pooled ``httpx.Client``."""

    def __init__(self, timeout: float | Timeouts | None = DEFAULT_TIMEOUTS,
                 http_client: httpx.Client | None = None,
                 limits: Limits | None = None) -> None:
        _check_client(http_client, httpx.Client, "SyncAiClient")
        _install_log_filters()
        self.limits = limits or Limits()
        self.timeouts = Timeouts.of(timeout)
        self._owned = http_client is None
        self._client = http_client or _new_client(httpx.Client, self.timeouts, self.limits)
        self._slots = threading.BoundedSemaphore(self.limits.max_in_flight)
        self._closed = False

    def send(self, req: PreparedRequest, provider: str | None = None,
             timeouts: Timeouts | None = None) -> RawResponse:
        opened = self.open(req, provider, timeouts)
        try:
            body = bytearray()
            while chunk := opened.read():
                body += chunk
                if len(body) > self.limits.max_body_bytes:
                    raise _too_big(provider, self.limits.max_body_bytes)
            return RawResponse(opened.head.status, opened.head.headers, bytes(body))
        finally:
            opened.close()

    def open(self, req: PreparedRequest, provider: str | None = None,
             timeouts: Timeouts | None = None) -> SyncOpened:
        if self._closed:
            raise _closed_error(provider)
        limits = timeouts or self.timeouts
        deadline = _Deadline(limits.total)
        if not self._slots.acquire(timeout=deadline.left()):
            raise deadline.error(provider)
        try:
            return self._open(req, provider, limits, deadline)
        except BaseException:
            self._slots.release()
            raise

    def _open(self, req: PreparedRequest, provider: str | None, timeouts: Timeouts,
              deadline: _Deadline) -> SyncOpened:
        log.debug("-> %s", req.describe())
        started = time.monotonic()
        request = _build(self._client, req, _httpx_timeout(timeouts, deadline.left()),
                         provider, timeouts)
        try:
            response = self._send(request, deadline, provider)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
            if isinstance(exc, httpx.TimeoutException) and deadline.expired():
                raise deadline.error(provider) from None
            raise _translate(exc, timeouts, provider) from None
        except RuntimeError as exc:
            raise _runtime_error(exc, provider) from None
        log.debug("<- %s %s (headers after %.1f ms)", response.status_code, req.describe(),
                  (time.monotonic() - started) * 1000.0)
        try:
            return SyncOpened(response, provider, deadline, timeouts, self._slots.release)
        except EngineError:
            response.close()
            raise

    def _send(self, request: httpx.Request, deadline: _Deadline,
              provider: str | None) -> httpx.Response:
        import concurrent.futures
        if deadline.at is None:
            return self._client.send(request, stream=True, follow_redirects=False)
        # A blocking send cannot be given an overall limit (headers may trickle in, each
        # byte within the read timeout): wait for it from here, bounded by the deadline.
        done: concurrent.futures.Future[httpx.Response] = _workers().submit(
            self._client.send, request, stream=True, follow_redirects=False)
        try:
            return done.result(timeout=deadline.left())
        except concurrent.futures.TimeoutError:
            done.add_done_callback(_close_late)
            raise deadline.error(provider) from None

    def close(self) -> None:
        self._closed = True
        if self._owned:
            self._client.close()


# ---------------------------------------------------------------- capture (tools/record)

@dataclass
class Capture:
    """What went over the wire for the last request made through :func:`capturing_client`.

    ``status`` stays 0 when no response came back (the connection failed, or
    the request never left); ``chunks`` are the body reads the client made.
    """

    method: str = ""
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)


def capturing_client(capture: Capture, inner: httpx.AsyncBaseTransport | None = None, *,
                     timeout: float = 120.0) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that records each exchange into *capture*.

    It asks for the identity encoding, so the recorded bytes replay as they
    are; *inner* is the transport that really sends (default: a new one).
    """
    recording = _Recording(inner or httpx.AsyncHTTPTransport(), capture)
    return httpx.AsyncClient(transport=recording, timeout=timeout)


class _Recording(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, capture: Capture) -> None:
        self._inner = inner
        self._capture = capture

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["accept-encoding"] = "identity"
        cap = self._capture
        cap.method, cap.url, cap.body = request.method, str(request.url), await request.aread()
        cap.headers = list(request.headers.multi_items())
        cap.status, cap.response_headers, cap.chunks = 0, [], []
        response = await self._inner.handle_async_request(request)
        cap.status = response.status_code
        cap.response_headers = list(response.headers.multi_items())
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Tee(response.stream, cap.chunks),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Tee(httpx.AsyncByteStream):
    def __init__(self, inner: Any, sink: list[bytes]) -> None:
        self._inner = inner
        self._sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if chunk:
                self._sink.append(bytes(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
