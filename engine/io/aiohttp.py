"""The optional async transport over aiohttp: the only module that imports aiohttp.

Chosen per client with ``AiClient.create(..., transport="aiohttp")`` (the
extra ``engine[aiohttp]``); it implements :class:`~engine.io.wire.AsyncWire`
with the invariants of the httpx transport (:mod:`engine.io.transport`):

- every exception of the HTTP stack becomes an :class:`EngineError` of the
  kind the httpx transport gives for the same fault (``timeout`` for connect,
  pool and read timeouts, the read one not retryable; ``connection`` for a
  refused, reset or truncated exchange; ``invalid_request`` for a request that
  cannot be written);
- redirects are never followed; cookies are never kept;
- bodies arrive undecoded (``auto_decompress=False``) and are decoded by
  :mod:`engine.io.encoding` in bounded pieces, like the httpx transport's;
- at most ``Limits.max_in_flight`` requests are on the wire, the others wait
  in arrival order; the pool holds ``Limits.max_connections`` connections;
- the URL is sent exactly as rendered (``yarl.URL(..., encoded=True)``);
- proxies come from the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``),
  read once when the session is made, as httpx reads them when its client is
  made; aiohttp's own ``trust_env`` would read them, and ``~/.netrc``, in a
  worker thread on every request.

Timeouts: ``connect`` bounds opening a connection, ``pool`` (added to it)
bounds waiting for one, ``read`` each read, ``total`` one attempt. aiohttp has
no write timeout: ``Timeouts.write`` is not applied by this transport.
The session belongs to the event loop that created it; a client used from a
new loop gets a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import yarl

from ..errors import EngineError
from ..limits import DEFAULT_TIMEOUTS, Limits, Timeouts
from ..protocol.plan import Head, RawResponse
from ..protocol.render import PreparedRequest
from .encoding import BodyDecoder, accept_encoding
from .transport import _closed_error, _Deadline, _install_log_filters, _too_big

__all__ = ["AiohttpOpened", "AiohttpTransport"]

log = logging.getLogger("engine")

_READ_ADVICE = ("not retried, since the provider may still be generating (and billing) the "
                "answer; use .stream() to receive it as it is produced, or a larger timeout=")


def _env_proxies() -> dict[str, str]:
    """The environment's http and https proxies and its no-proxy list (``no``)."""
    found = urllib.request.getproxies_environment()
    return {k: v for k, v in found.items() if k in ("http", "https", "no") and v}


def _bypassed(host: str, proxies: dict[str, str]) -> bool:
    """Whether the no-proxy list of *proxies* (``no``) names *host* (urllib's own test)."""
    test = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    return bool(test(host, proxies))


def _translate(exc: BaseException, timeouts: Timeouts, provider: str | None) -> EngineError:
    """The EngineError for an exception of aiohttp (the httpx transport's kinds)."""
    name = type(exc).__name__
    detail = str(exc) or name
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return EngineError("timeout", f"no connection within the connect timeout of "
                           f"{timeouts.connect}s", provider=provider)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return EngineError("timeout", f"no data within the read timeout of {timeouts.read}s; "
                           + _READ_ADVICE, provider=provider, retryable=False)
    if isinstance(exc, aiohttp.InvalidURL):
        return EngineError("invalid_request", f"bad URL: {detail}", provider=provider,
                           retryable=False)
    if isinstance(exc, (UnicodeError, ValueError)) and not isinstance(exc, aiohttp.ClientError):
        return EngineError("invalid_request", f"the request could not be sent: {name}",
                           provider=provider, retryable=False)
    return EngineError("connection", f"{name}: {detail}", provider=provider)


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_key, raw_value in response.raw_headers:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _cap(value: float | None, remaining: float | None) -> float | None:
    if remaining is None:
        return value
    return remaining if value is None else min(value, remaining)


def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    connect = (None if timeouts.connect is None and timeouts.pool is None
               else (timeouts.connect or 0.0) + (timeouts.pool or 0.0))
    return aiohttp.ClientTimeout(total=None, connect=connect,
                                 sock_connect=timeouts.connect, sock_read=timeouts.read)


class AiohttpOpened:
    """An open aiohttp response: its head, and the body still to be read."""

    def __init__(self, response: aiohttp.ClientResponse, provider: str | None,
                 deadline: _Deadline, timeouts: Timeouts, release: object) -> None:
        self.head = Head(response.status, _headers(response))
        self._response = response
        self._provider = provider
        self._deadline = deadline
        self._timeouts = timeouts
        self._decoder = BodyDecoder(response.headers.get("content-encoding"))
        self._pending: Iterator[bytes] = iter(())
        self._finished = False
        self._eof = False
        self._release = release

    async def _next_raw(self) -> bytes | None:
        try:
            chunk = await asyncio.wait_for(self._response.content.readany(),
                                           self._deadline.left())
        except asyncio.TimeoutError:
            raise self._deadline.error(self._provider) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, self._timeouts, self._provider) from None
        if not chunk:
            self._eof = True
            return None
        return chunk

    async def read(self) -> bytes:
        """The next decoded piece; ``b""`` at the end of the body."""
        if self._decoder.identity:
            return (await self._next_raw()) or b""
        while True:
            piece = next(self._pending, None)
            if piece:
                return piece
            if self._finished:
                return b""
            raw = await self._next_raw()
            if raw is None:
                self._finished = True
                self._pending = self._decoder.finish()
            else:
                self._pending = self._decoder.feed(raw)

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
            while chunk := await self._response.content.readany():
                size += len(chunk)
                if size > max_bytes:
                    return
            self._eof = True

        with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, OSError,
                                 RuntimeError):
            await asyncio.wait_for(rest(), seconds)

    async def aclose(self) -> None:
        release, self._release = self._release, None
        try:
            if self._eof:
                self._response.release()  # the connection goes back to the pool
            else:
                self._response.close()  # a body left unread: the connection is dropped
        finally:
            if callable(release):
                release()


class AiohttpTransport:
    """Async HTTP via one pooled ``aiohttp.ClientSession`` per event loop."""

    def __init__(self, timeout: float | Timeouts | None = DEFAULT_TIMEOUTS,
                 limits: Limits | None = None) -> None:
        _install_log_filters()
        self.limits = limits or Limits()
        self.timeouts = Timeouts.of(timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self._proxies: dict[str, str] = {}
        self._proxy_of: dict[tuple[str, str | None, int | None], str | None] = {}

    def _bind_loop(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._session is None or self._slots is None:
            # A session of a loop that is gone cannot be closed from this one: dropped.
            connector = aiohttp.TCPConnector(limit=self.limits.max_connections,
                                             limit_per_host=0)
            self._proxies, self._proxy_of = _env_proxies(), {}
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",))
            self._loop = loop
            self._slots = asyncio.Semaphore(self.limits.max_in_flight)
        return self._session, self._slots

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
                   timeouts: Timeouts | None = None) -> AiohttpOpened:
        if self._closed:
            raise _closed_error(provider)
        limits = timeouts or self.timeouts
        deadline = _Deadline(limits.total)
        session, slots = self._bind_loop()
        try:
            await asyncio.wait_for(slots.acquire(), deadline.left())
        except asyncio.TimeoutError:
            raise deadline.error(provider) from None
        try:
            return await self._open(session, req, provider, limits, deadline, slots)
        except BaseException:
            slots.release()
            raise

    async def _open(self, session: aiohttp.ClientSession, req: PreparedRequest,
                    provider: str | None, timeouts: Timeouts, deadline: _Deadline,
                    slots: asyncio.Semaphore) -> AiohttpOpened:
        log.debug("-> %s", req.describe())
        started = time.monotonic()
        headers = list(req.headers)
        if not any(name == "accept-encoding" for name, _ in headers):
            headers.append(("accept-encoding", accept_encoding()))
        try:
            url = yarl.URL(req.url, encoded=True)
            response = await asyncio.wait_for(session.request(
                req.method, url, headers=headers, data=req.body or None,
                allow_redirects=False, timeout=_client_timeout(timeouts),
                proxy=self._proxy(url)), deadline.left())
        except asyncio.TimeoutError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise _translate(exc, timeouts, provider) from None
            raise deadline.error(provider) from None
        except (aiohttp.ClientError, OSError, UnicodeError, ValueError) as exc:
            raise _translate(exc, timeouts, provider) from None
        except RuntimeError as exc:
            raise EngineError("invalid_request", f"the HTTP client cannot be used here: "
                              f"{exc}", provider=provider, retryable=False) from None
        log.debug("<- %s %s (headers after %.1f ms)", response.status, req.describe(),
                  (time.monotonic() - started) * 1000.0)
        return AiohttpOpened(response, provider, deadline, timeouts, slots.release)

    def _proxy(self, url: yarl.URL) -> str | None:
        """The environment's proxy for *url*'s origin (None: connect directly)."""
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxy_of:
            proxy = self._proxies.get(url.scheme)
            if proxy is not None and url.host is not None and _bypassed(url.host, self._proxies):
                proxy = None
            if len(self._proxy_of) < 256:
                self._proxy_of[origin] = proxy
            return proxy
        return self._proxy_of[origin]

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(RuntimeError):  # a loop already gone
                await session.close()
