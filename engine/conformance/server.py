"""A strict, scriptable HTTP/1.1 server on loopback for tests, conformance replay and demos.

Contract
--------
:class:`ReplayServer` listens on ``host`` (default ``127.0.0.1``) at an ephemeral port and
serves every TCP connection in its own daemon thread. For each complete request it:

1. parses the request itself (request line, headers, body framed by ``Content-Length`` or
   decoded from ``Transfer-Encoding: chunked``) and is strict about it: a malformed request is
   answered ``400`` (``431`` for an over-long header section, ``413`` for a body over
   ``max_body_bytes``, ``417`` for an unknown expectation, ``501`` for an unsupported transfer
   coding, ``505`` for an HTTP version other than 1.0/1.1) and the connection is closed; such a
   request is never recorded and never reaches the handler;
2. appends a :class:`RecordedRequest` holding exactly what the client sent (method, target as
   received, headers in order with their names as received, decoded body) to
   :attr:`ReplayServer.requests`;
3. asks the handler (or, without one, pops the FIFO filled by :meth:`ReplayServer.enqueue`;
   an empty queue answers ``599`` with a plain-text body saying so) for a
   :class:`ScriptedResponse`; a handler that raises, or returns an invalid script, is answered
   ``500`` with the exception text as a plain-text body;
4. writes ``HTTP/1.1 {status} {reason}``, the scripted headers in order, then one framing header
   (``Content-Length: N`` or ``Transfer-Encoding: chunked``) unless the script set either itself
   (then its body is written raw and the connection is closed afterwards), then the body. Each
   non-empty scripted chunk is one ``sendall`` (one HTTP chunk when chunked) on a socket with
   ``TCP_NODELAY``, with ``chunk_delay`` seconds between chunks, so recorded chunk boundaries
   survive on the wire as far as TCP allows. Faults (``ScriptedResponse.fault``) replace or
   interrupt this sequence: resets send an RST (``SO_LINGER`` 1/0), hangs keep the socket open
   until the client leaves or the server stops.

Connections are persistent (HTTP/1.1 keep-alive, pipelining allowed) unless the request says
``Connection: close``, the request is HTTP/1.0, or the script sends ``Connection: close``.

:attr:`ReplayServer.disconnects` counts connections the client closed (EOF or reset) while a
response was in progress: before it was complete, between chunks, or during a hang. Every wait
(chunk delays, hangs) is interruptible by :meth:`ReplayServer.stop`, which returns well within a
second even with hung connections and frees the port. Counters and the request log are guarded by
one lock, so the server may be driven from any thread or event loop.
"""

from __future__ import annotations

import collections
import contextlib
import http
import json as _json
import re
import selectors
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "FAULTS",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "Handler",
    "RecordedRequest",
    "ReplayServer",
    "ScriptedResponse",
]

MAX_BODY_BYTES = 32 * 1024 * 1024
"""Default cap on a decoded request body; larger bodies are answered 413."""

MAX_HEADER_BYTES = 64 * 1024
"""Cap on a request line plus header section (and on a chunked body's trailer section): 431."""

FAULTS: frozenset[str] = frozenset(
    {
        "reset_before_headers",
        "reset_after_headers",
        "reset_mid_body",
        "hang_before_headers",
        "close_without_response",
        "hang_after_body_start",
    }
)

_BODY_FAULTS = frozenset({"reset_after_headers", "reset_mid_body", "hang_after_body_start"})
_STOP_JOIN_SECONDS = 0.5
_DRAIN_SECONDS = 0.5
_RECV_SIZE = 65536

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class RecordedRequest:
    """One complete request exactly as the client sent it (body de-chunked if it was chunked)."""

    method: str
    path: str
    """The request target as received in the request line: path plus ``?query`` if any."""
    headers: list[tuple[str, str]]
    """Header fields in order, names as received, values without surrounding whitespace."""
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    @property
    def url_path(self) -> str:
        """The path of the target, without the query."""
        if self.path.startswith(("/", "*")):
            return self.path.partition("?")[0]
        return urllib.parse.urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string parsed into lists of values (blank values kept)."""
        if self.path.startswith(("/", "*")):
            raw = self.path.partition("?")[2]
        else:
            raw = urllib.parse.urlsplit(self.path).query
        return urllib.parse.parse_qs(raw, keep_blank_values=True)


@dataclass
class ScriptedResponse:
    """What the server answers to one request; see the module docstring for the wire format."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    chunk_delay: float = 0.0
    chunked: bool | None = None
    fault: str | None = None
    fault_after_chunks: int = 0

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> ScriptedResponse:
        """A JSON body in one chunk (Content-Length framing), Content-Type application/json."""
        body = _json.dumps(obj).encode("utf-8")
        return cls(status=status, headers=_with_type(headers, "application/json"), chunks=[body])

    @classmethod
    def sse(
        cls, chunks: list[bytes], status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> ScriptedResponse:
        """An event stream sent at the given chunk boundaries, Content-Type text/event-stream."""
        return cls(
            status=status, headers=_with_type(headers, "text/event-stream"), chunks=list(chunks)
        )


Handler = Callable[[RecordedRequest], ScriptedResponse]


def _with_type(headers: list[tuple[str, str]] | None, content_type: str) -> list[tuple[str, str]]:
    extra = list(headers or [])
    if any(name.lower() == "content-type" for name, _ in extra):
        return extra
    return [("Content-Type", content_type), *extra]


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _plain(status: int, text: str, *, close: bool = False) -> ScriptedResponse:
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if close:
        headers.append(("Connection", "close"))
    return ScriptedResponse(status=status, headers=headers, chunks=[text.encode("utf-8")])


# --------------------------------------------------------------------------- internals


class _HttpError(Exception):
    """The request cannot be served: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Stopped(Exception):
    """The server is stopping."""


class _ClientGone(Exception):
    """The client closed or reset the connection."""


class _Connection:
    """A client socket with a read buffer and stop-aware waits."""

    def __init__(self, sock: socket.socket, wake: socket.socket, stopping: threading.Event):
        self.sock = sock
        self.wake = wake
        self.stopping = stopping
        self.buf = bytearray()
        self.closed = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.selector.register(wake, selectors.EVENT_READ)

    # -- waiting ---------------------------------------------------------------------------

    def _select(self, timeout: float | None) -> bool:
        """Wait until the socket is readable (True) or ``timeout`` passes (False)."""
        if self.stopping.is_set():
            raise _Stopped
        try:
            events = self.selector.select(timeout)
        except (OSError, ValueError) as exc:
            raise _Stopped from exc
        readable = False
        for key, _mask in events:
            if key.fileobj is self.wake:
                raise _Stopped
            readable = True
        if self.stopping.is_set():
            raise _Stopped
        return readable

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(_RECV_SIZE)
        except OSError as exc:
            if self.stopping.is_set():
                raise _Stopped from exc
            raise _ClientGone from exc

    def fill(self) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        while not self._select(None):
            pass
        data = self._recv()
        if not data:
            return False
        self.buf += data
        return True

    def wait(self, timeout: float | None, keep_limit: int) -> None:
        """Sleep ``timeout`` seconds (None: forever) while watching the client and the server.

        Bytes the client sends meanwhile (a pipelined request) are kept in the buffer up to
        ``keep_limit``; beyond that they are dropped. Raises ``_ClientGone`` on EOF or reset and
        ``_Stopped`` when the server stops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                if self.stopping.is_set():
                    raise _Stopped
                return
            if not self._select(remaining):
                continue
            data = self._recv()
            if not data:
                raise _ClientGone
            if len(self.buf) + len(data) <= keep_limit:
                self.buf += data

    def check_alive(self, keep_limit: int) -> None:
        """Raise ``_ClientGone`` / ``_Stopped`` if that already happened, without waiting."""
        while self._select(0):
            data = self._recv()
            if not data:
                raise _ClientGone
            if len(self.buf) + len(data) <= keep_limit:
                self.buf += data

    # -- reading ---------------------------------------------------------------------------

    def read_line(self, limit: int, what: str) -> bytes | None:
        """One CRLF-terminated line without its CRLF; None if EOF comes first."""
        start = 0
        while True:
            index = self.buf.find(b"\n", start)
            if index >= 0:
                if index == 0 or self.buf[index - 1] != 0x0D:
                    raise _HttpError(400, f"{what} ends with a bare LF (CRLF required)")
                if index + 1 > limit:
                    raise _HttpError(431, f"{what} exceeds {limit} bytes")
                line = bytes(self.buf[: index - 1])
                del self.buf[: index + 1]
                return line
            if len(self.buf) > limit:
                raise _HttpError(431, f"{what} exceeds {limit} bytes")
            start = len(self.buf)
            if not self.fill():
                return None

    def read_exact(self, count: int) -> bytes | None:
        """Exactly ``count`` bytes; None if EOF comes first."""
        while len(self.buf) < count:
            if not self.fill():
                return None
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    # -- writing and closing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.stopping.is_set():
            raise _Stopped
        try:
            self.sock.sendall(data)
        except OSError as exc:
            if self.stopping.is_set():
                raise _Stopped from exc
            raise _ClientGone from exc

    def reset(self) -> None:
        """Abort the connection with an RST."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close_gracefully(self) -> None:
        """Send FIN, then briefly drain what the client still sends so the close is no RST."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        deadline = time.monotonic() + _DRAIN_SECONDS
        with contextlib.suppress(_Stopped, _ClientGone):
            while (remaining := deadline - time.monotonic()) > 0:
                if self._select(remaining) and not self._recv():
                    break
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.selector.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def _parse_field(line: bytes, what: str) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise _HttpError(400, f"obsolete line folding in {what}")
    name, colon, value = line.partition(b":")
    if not colon:
        raise _HttpError(400, f"{what} line without a colon: {line[:80]!r}")
    if not _TOKEN.fullmatch(name):
        raise _HttpError(400, f"invalid {what} name {name[:80]!r}")
    if _FIELD_VALUE_BAD.search(value):
        raise _HttpError(400, f"control character in {what} {name.decode('latin-1')!r}")
    return name.decode("latin-1"), value.strip(b" \t").decode("latin-1")


def _comma_list(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    items: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            items.extend(part.strip(" \t") for part in value.split(","))
    return items


def _validate(response: object) -> ScriptedResponse:
    """Return ``response`` if it is a usable script, else raise ValueError/TypeError."""
    if not isinstance(response, ScriptedResponse):
        raise TypeError(f"handler returned {type(response).__name__}, not ScriptedResponse")
    if not isinstance(response.status, int) or not 200 <= response.status <= 999:
        raise ValueError(f"status must be an int in 200..999, got {response.status!r}")
    if response.fault is not None and response.fault not in FAULTS:
        raise ValueError(f"unknown fault {response.fault!r}; expected one of {sorted(FAULTS)}")
    if response.fault_after_chunks < 0 or response.chunk_delay < 0:
        raise ValueError("fault_after_chunks and chunk_delay must not be negative")
    for name, value in response.headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header {name!r} must be a pair of str")
        if any(ch in name + value for ch in "\r\n") or not name or ":" in name:
            raise ValueError(f"header {name!r} contains a line break or is not a field name")
        (name + value).encode("latin-1")  # UnicodeEncodeError (a ValueError) -> 500
    for chunk in response.chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunks must be bytes, got {type(chunk).__name__}")
    if response.status in (204, 304) and any(len(chunk) for chunk in response.chunks):
        raise ValueError(f"a {response.status} response cannot have a body")
    return response


# --------------------------------------------------------------------------- the server


class ReplayServer:
    """A loopback HTTP/1.1 server answering scripted responses; see the module docstring."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        host: str = "127.0.0.1",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.handler: Handler | None = handler
        self.host = host
        self.max_body_bytes = max_body_bytes
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._queue: collections.deque[ScriptedResponse] = collections.deque()
        self._connections_opened = 0
        self._peak_connections = 0
        self._disconnects = 0
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ReplayServer:
        """Bind an ephemeral port and start serving in a daemon thread."""
        if self._accept_thread is not None:
            raise RuntimeError("ReplayServer is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._stopping.clear()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener = listener
        self._port = listener.getsockname()[1]
        thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, self._wake_r),
            name=f"ReplayServer-accept-{self._port}",
            daemon=True,
        )
        self._accept_thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, abort every connection (hung ones included) and free the port."""
        thread = self._accept_thread
        if thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        thread.join(_STOP_JOIN_SECONDS)
        if self._listener is not None:
            self._listener.close()
        with self._cond:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:  # wakes threads blocked in sendall/recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for worker in threads:
            worker.join(max(0.0, deadline - time.monotonic()))
        for wake in (self._wake_r, self._wake_w):
            if wake is not None:
                wake.close()
        self._wake_r = self._wake_w = None
        self._listener = None
        self._accept_thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public state ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT``; valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("ReplayServer has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port; valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("ReplayServer has not been started")
        return self._port

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every complete request received so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    @property
    def connections_opened(self) -> int:
        with self._cond:
            return self._connections_opened

    @property
    def peak_connections(self) -> int:
        """The most connections that were open at the same time."""
        with self._cond:
            return self._peak_connections

    @property
    def disconnects(self) -> int:
        with self._cond:
            return self._disconnects

    def enqueue(self, *responses: ScriptedResponse) -> None:
        """Append responses to the FIFO answered when no handler is set."""
        with self._cond:
            self._queue.extend(responses)

    def wait_for_disconnect(self, timeout: float, count: int = 1) -> bool:
        """Wait until at least ``count`` client disconnects were seen; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._disconnects >= count, timeout)

    def reset(self) -> None:
        """Forget recorded requests, queued responses and counters."""
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self._connections_opened = 0
            self._peak_connections = len(self._sockets)
            self._disconnects = 0

    # -- accepting -------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                try:
                    events = selector.select()
                except (OSError, ValueError):
                    return
                if self._stopping.is_set() or any(key.fileobj is wake for key, _ in events):
                    return
                try:
                    sock, _addr = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    if self._stopping.is_set():
                        return
                    continue
                self._spawn(sock, wake)

    def _spawn(self, sock: socket.socket, wake: socket.socket) -> None:
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._cond:
            self._connections_opened += 1
            self._sockets.add(sock)
            self._peak_connections = max(self._peak_connections, len(self._sockets))
            self._threads = {t for t in self._threads if t.is_alive()}
            thread = threading.Thread(
                target=self._serve,
                args=(sock, wake),
                name=f"ReplayServer-conn-{self._port}-{self._connections_opened}",
                daemon=True,
            )
            self._threads.add(thread)
            thread.start()  # under the lock, so stop() never joins an unstarted thread

    # -- one connection --------------------------------------------------------------------

    def _serve(self, sock: socket.socket, wake: socket.socket) -> None:
        conn = _Connection(sock, wake, self._stopping)
        try:
            keep_alive = True
            while keep_alive:
                try:
                    request, keep_alive = self._read_request(conn)
                except _HttpError as err:
                    with contextlib.suppress(_ClientGone):
                        error = _plain(err.status, err.message + "\n", close=True)
                        self._write(conn, "GET", error, watch_client=False)
                    conn.close_gracefully()
                    return
                if request is None:
                    return
                with self._cond:
                    self._requests.append(request)
                response = self._answer(request)
                try:
                    keep_alive = self._write(conn, request.method, response) and keep_alive
                except _ClientGone:
                    with self._cond:
                        self._disconnects += 1
                        self._cond.notify_all()
                    return
                if not keep_alive and not conn.closed:
                    conn.close_gracefully()
        except (_Stopped, _ClientGone, OSError):
            pass
        finally:
            conn.close()
            with self._cond:
                self._sockets.discard(sock)

    def _answer(self, request: RecordedRequest) -> ScriptedResponse:
        handler = self.handler
        try:
            if handler is not None:
                return _validate(handler(request))
            with self._cond:
                scripted = self._queue.popleft() if self._queue else None
            if scripted is None:
                return _plain(
                    599,
                    f"ReplayServer: no scripted response queued for "
                    f"{request.method} {request.path}\n",
                )
            return _validate(scripted)
        except Exception as exc:
            return _plain(500, f"{type(exc).__name__}: {exc}\n")

    def _read_request(self, conn: _Connection) -> tuple[RecordedRequest | None, bool]:
        """The next request and whether the connection may stay open after its response."""
        budget = MAX_HEADER_BYTES
        while True:  # tolerate empty lines before a request line (RFC 9112 2.2)
            if not conn.buf and not conn.fill():
                return None, False
            maybe = conn.read_line(budget, "request line")
            if maybe is None:
                raise _HttpError(400, "connection closed in the middle of the request line")
            if maybe:
                line = maybe
                break
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            raise _HttpError(400, f"malformed request line {line[:200]!r}")
        method_b, target_b, version_b = parts
        if not _TOKEN.fullmatch(method_b):
            raise _HttpError(400, f"invalid method {method_b[:80]!r}")
        if not _TARGET.fullmatch(target_b) or b"#" in target_b:
            raise _HttpError(400, f"invalid request target {target_b[:200]!r}")
        if not (
            target_b.startswith(b"/")
            or (target_b == b"*" and method_b == b"OPTIONS")
            or target_b.lower().startswith((b"http://", b"https://"))
        ):
            raise _HttpError(400, f"invalid request target {target_b[:200]!r}")
        version = _VERSION.fullmatch(version_b)
        if version is None:
            raise _HttpError(400, f"malformed HTTP version {version_b[:40]!r}")
        if version.group(1, 2) not in ((b"1", b"1"), (b"1", b"0")):
            raise _HttpError(505, f"HTTP version {version_b.decode()} is not supported")
        http11 = version.group(2) == b"1"
        budget -= len(line) + 2

        headers = self._read_fields(conn, budget, "header")
        method = method_b.decode("ascii")
        hosts = [v for k, v in headers if k.lower() == "host"]
        if http11 and len(hosts) != 1:
            raise _HttpError(400, f"an HTTP/1.1 request needs exactly one Host header, got {hosts}")
        connection = [token.lower() for token in _comma_list(headers, "connection")]
        keep_alive = "close" not in connection if http11 else False

        body = self._read_body(conn, headers, http11)
        request = RecordedRequest(method, target_b.decode("ascii"), headers, body)
        return request, keep_alive

    def _read_fields(self, conn: _Connection, budget: int, what: str) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        while True:
            line = conn.read_line(budget, f"{what} section")
            if line is None:
                raise _HttpError(400, f"connection closed in the middle of the {what} section")
            budget -= len(line) + 2
            if not line:
                return fields
            fields.append(_parse_field(line, what))

    def _read_body(self, conn: _Connection, headers: list[tuple[str, str]], http11: bool) -> bytes:
        codings = [c.lower() for c in _comma_list(headers, "transfer-encoding")]
        lengths = _comma_list(headers, "content-length")
        expect = [e.lower() for e in _comma_list(headers, "expect")]
        if expect and (expect != ["100-continue"] or not http11):
            raise _HttpError(417, f"unsupported expectation {expect}")
        if codings:
            if lengths:
                raise _HttpError(400, "both Transfer-Encoding and Content-Length are present")
            if not http11:
                raise _HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if codings[-1] != "chunked" or "" in codings:
                raise _HttpError(400, f"Transfer-Encoding must end with chunked, got {codings}")
            if codings != ["chunked"]:
                raise _HttpError(501, f"unsupported transfer coding in {codings}")
            if expect:
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            return self._read_chunked(conn)
        if not lengths:
            return b""
        if not all(_DIGITS.fullmatch(value) for value in lengths) or len(set(lengths)) != 1:
            raise _HttpError(400, f"invalid Content-Length {lengths}")
        length = int(lengths[0])
        if length > self.max_body_bytes:
            raise _HttpError(413, f"request body of {length} bytes exceeds {self.max_body_bytes}")
        if expect and length:
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = conn.read_exact(length)
        if body is None:
            raise _HttpError(400, f"connection closed before {length} body bytes arrived")
        return body

    def _read_chunked(self, conn: _Connection) -> bytes:
        body = bytearray()
        while True:
            line = conn.read_line(4096, "chunk size line")
            if line is None:
                raise _HttpError(400, "connection closed in the middle of a chunked body")
            size_text = line.split(b";", 1)[0].rstrip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise _HttpError(400, f"invalid chunk size line {line[:80]!r}")
            size = int(size_text, 16)
            if size == 0:
                self._read_fields(conn, MAX_HEADER_BYTES, "trailer")  # validated, not recorded
                return bytes(body)
            if len(body) + size > self.max_body_bytes:
                raise _HttpError(413, f"chunked request body exceeds {self.max_body_bytes} bytes")
            data = conn.read_exact(size + 2)
            if data is None:
                raise _HttpError(400, "connection closed in the middle of a chunk")
            if data[-2:] != b"\r\n":
                raise _HttpError(400, "chunk data is not followed by CRLF")
            body += data[:-2]

    # -- writing a response ----------------------------------------------------------------

    def _write(
        self,
        conn: _Connection,
        method: str,
        response: ScriptedResponse,
        *,
        watch_client: bool = True,
    ) -> bool:
        """Send ``response``; True if the connection may serve another request.

        Raises ``_ClientGone`` if the client leaves (EOF or reset) before the response is
        complete. ``watch_client=False`` (error answers to malformed requests) only notices
        failed writes, so a client that half-closed after its request still gets the answer.
        """
        keep = self.max_body_bytes + MAX_HEADER_BYTES
        fault = response.fault
        if fault == "reset_before_headers":
            conn.reset()
            return False
        if fault == "hang_before_headers":
            conn.wait(None, keep)
        if fault == "close_without_response":
            conn.close_gracefully()
            return False

        status = response.status
        names = {name.lower() for name, _ in response.headers}
        chunks = [bytes(chunk) for chunk in response.chunks if len(chunk)]
        script_framed = bool(names & {"content-length", "transfer-encoding"})
        bodyless = status in (204, 304)
        chunked = response.chunked
        if chunked is None:
            chunked = len(response.chunks) > 1 or (fault in _BODY_FAULTS)
        chunked = chunked and not script_framed and not bodyless

        lines = [f"HTTP/1.1 {status} {_reason(status)}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        if not script_framed and not bodyless:
            if chunked:
                lines.append("Transfer-Encoding: chunked\r\n")
            else:
                lines.append(f"Content-Length: {sum(len(c) for c in chunks)}\r\n")
        lines.append("\r\n")
        if watch_client:
            conn.check_alive(keep)
        conn.send("".join(lines).encode("latin-1"))
        with_body = method != "HEAD" and not bodyless
        if not with_body:
            chunks = []

        if fault == "reset_after_headers":
            conn.reset()
            return False
        limit = response.fault_after_chunks if fault in _BODY_FAULTS else len(chunks)
        for index, chunk in enumerate(chunks[:limit]):
            if index and response.chunk_delay > 0:
                conn.wait(response.chunk_delay, keep)
            if watch_client:
                conn.check_alive(keep)
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if fault == "reset_mid_body":
            conn.reset()
            return False
        if fault == "hang_after_body_start":
            conn.wait(None, keep)
        if chunked and with_body:
            conn.send(b"0\r\n\r\n")
        closes = "close" in [t.lower() for t in _comma_list(response.headers, "connection")]
        return not (script_framed or closes)
