"""Tests for engine.conformance.server: a strict loopback HTTP/1.1 server with scripted answers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse

SSE = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        yield srv


# --------------------------------------------------------------------------- raw helpers


def connect(srv: ReplayServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while True:
        piece = sock.recv(65536)
        if not piece:
            return bytes(data)
        data += piece


def read_head(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        assert piece, f"EOF before end of head: {bytes(buf)!r}"
        buf += piece
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head + b"\r\n\r\n"


def read_exact(sock: socket.socket, buf: bytearray, count: int) -> bytes:
    while len(buf) < count:
        piece = sock.recv(65536)
        assert piece, "EOF before end of body"
        buf += piece
    data = bytes(buf[:count])
    del buf[:count]
    return data


def raw_exchange(srv: ReplayServer, data: bytes) -> bytes:
    """Send ``data`` and return everything until the server closes the connection."""
    with connect(srv) as sock:
        sock.sendall(data)
        return read_to_eof(sock)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# --------------------------------------------------------------------------- basic replies


def test_json_reply_uses_content_length(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({"ok": True, "n": 1}))
    response = httpx.get(server.url + "/v1/thing")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "n": 1}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers


def test_status_line_and_headers_are_written_exactly(server: ReplayServer) -> None:
    server.enqueue(
        ScriptedResponse(status=529, headers=[("X-B", "2"), ("x-a", "1")], chunks=[b"hi"]),
        ScriptedResponse(status=404, chunks=[b"ab", b"", b"cde"]),
    )
    request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(request)
        buf = bytearray()
        head = read_head(sock, buf)
        assert head == b"HTTP/1.1 529 Unknown\r\nX-B: 2\r\nx-a: 1\r\nContent-Length: 2\r\n\r\n"
        assert read_exact(sock, buf, 2) == b"hi"
        sock.sendall(request)
        expected = (
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        )
        assert read_exact(sock, buf, len(expected)) == expected


def test_script_framing_header_is_respected_and_connection_closed(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(headers=[("Content-Length", "10")], chunks=[b"abc"]))
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert data == b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    server.enqueue(ScriptedResponse(headers=[("Content-Length", "10")], chunks=[b"abc"]))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url)


def test_chunked_false_sends_pieces_under_one_content_length(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(chunks=[b"ab", b"cd", b"ef"], chunked=False, chunk_delay=0.05))
    with httpx.Client() as client, client.stream("GET", server.url) as response:
        assert response.headers["content-length"] == "6"
        pieces = list(response.iter_raw())
    assert pieces == [b"ab", b"cd", b"ef"]  # boundaries survive TCP with a small delay


def test_head_and_204_carry_no_body(server: ReplayServer) -> None:
    server.enqueue(
        ScriptedResponse.json({"a": 1}),
        ScriptedResponse(status=204),
        ScriptedResponse.json({"b": 2}),
    )
    with connect(server) as sock:
        buf = bytearray()
        sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
        assert b"Content-Length: 8\r\n" in read_head(sock, buf)
        sock.sendall(b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_head(sock, buf) == b"HTTP/1.1 204 No Content\r\n\r\n"
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_head(sock, buf).startswith(b"HTTP/1.1 200 OK\r\n")
        assert read_exact(sock, buf, 8) == b'{"b": 2}'
    assert server.connections_opened == 1


# --------------------------------------------------------------------------- streaming


def test_sse_chunk_boundaries_preserved_on_the_wire(server: ReplayServer) -> None:
    server.enqueue(
        ScriptedResponse(
            headers=[("Content-Type", "text/event-stream")], chunks=SSE, chunk_delay=0.05
        )
    )
    with connect(server) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        segments: list[bytes] = []
        while piece := sock.recv(65536):
            segments.append(piece)
    stream = b"".join(segments)
    head, _, body = stream.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    encoded = [b"%x\r\n%s\r\n" % (len(c), c) for c in SSE]
    assert body == b"".join(encoded) + b"0\r\n\r\n"
    # Every chunk after the first starts a fresh read: the scripted boundaries reached the client.
    starts, offset = set(), 0
    for segment in segments:
        starts.add(offset)
        offset += len(segment)
    position = len(head) + 4 + len(encoded[0])
    for chunk in encoded[1:]:
        assert position in starts
        position += len(chunk)


def test_sse_builder_and_httpx_iter_raw(server: ReplayServer) -> None:
    response_script = ScriptedResponse.sse(SSE, headers=[("X-Trace", "t1")])
    response_script.chunk_delay = 0.02
    assert response_script.headers == [("Content-Type", "text/event-stream"), ("X-Trace", "t1")]
    server.enqueue(response_script)
    with httpx.Client() as client, client.stream("GET", server.url + "/sse") as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        assert list(response.iter_raw()) == SSE


async def test_async_client_stream(server: ReplayServer) -> None:
    server.enqueue(
        ScriptedResponse.sse(SSE),
        ScriptedResponse.json({"done": True}),
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("POST", "/a", json={"q": 1}) as response:
            pieces = [piece async for piece in response.aiter_raw()]
        second = await client.get("/b")
    assert pieces == SSE
    assert second.json() == {"done": True}
    assert [r.url_path for r in server.requests] == ["/a", "/b"]
    assert server.requests[0].json() == {"q": 1}
    assert server.connections_opened == 1


def test_empty_chunks_are_skipped(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(chunks=[b"", b"a", b"", b"b"]))
    data = raw_exchange(server, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n\r\n")


# --------------------------------------------------------------------------- requests


def test_request_record_is_exact(server: ReplayServer) -> None:
    body = b'{"a": [1, 2]}'
    server.enqueue(ScriptedResponse.json({}))
    raw = (
        b"POST /v1/chat?x=1&y=&x=2 HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"X-Custom-Header:   value  with spaces \t\r\n"
        b"content-type: application/json\r\n"
        b"X-Custom-Header: second\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    assert status_of(raw_exchange(server, raw)) == 200
    [recorded] = server.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat?x=1&y=&x=2"
    assert recorded.url_path == "/v1/chat"
    assert recorded.query == {"x": ["1", "2"], "y": [""]}
    assert recorded.headers == [
        ("Host", "127.0.0.1"),
        ("X-Custom-Header", "value  with spaces"),
        ("content-type", "application/json"),
        ("X-Custom-Header", "second"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    assert recorded.header("x-custom-header") == "value  with spaces"
    assert recorded.header("CONTENT-TYPE") == "application/json"
    assert recorded.header("missing") is None
    assert recorded.body == body
    assert recorded.json() == {"a": [1, 2]}


def test_request_record_from_httpx(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({"id": 1}))
    httpx.post(
        server.url + "/v2/items?limit=5",
        json={"name": "x"},
        headers={"X-Api-Key": "k", "Accept": "application/json"},
    )
    [recorded] = server.requests
    assert (recorded.method, recorded.url_path, recorded.query) == (
        "POST",
        "/v2/items",
        {"limit": ["5"]},
    )
    assert recorded.header("x-api-key") == "k"
    assert recorded.header("content-length") == str(len(recorded.body))
    assert recorded.json() == {"name": "x"}


def test_recorded_request_helpers() -> None:
    absolute = RecordedRequest("GET", "http://h:1/p/q?a=b", [], b"")
    assert absolute.url_path == "/p/q"
    assert absolute.query == {"a": ["b"]}
    plain = RecordedRequest("GET", "/only", [("A", "1"), ("a", "2")], b"null")
    assert plain.query == {}
    assert plain.header("A") == "1"
    assert plain.json() is None


def test_chunked_request_body_is_decoded(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({}), ScriptedResponse.json({}))
    httpx.post(server.url + "/up", content=iter([b"hello ", b"world"]))
    raw = (
        b"POST /raw HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5;ext=1\r\nhello\r\nB\r\n wide world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    assert status_of(raw_exchange(server, raw)) == 200
    first, second = server.requests
    assert first.header("transfer-encoding") == "chunked"
    assert first.body == b"hello world"
    assert second.body == b"hello wide world"
    assert second.header("x-trailer") is None  # trailers are validated, not recorded


def test_expect_100_continue(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({}))
    with connect(server) as sock:
        sock.sendall(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        )
        buf = bytearray()
        assert read_head(sock, buf) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert read_head(sock, buf).startswith(b"HTTP/1.1 200 OK\r\n")
    assert server.requests[0].body == b"abc"


def test_keep_alive_serves_two_requests_on_one_connection(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({"n": 1}), ScriptedResponse.json({"n": 2}))
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/1").json() == {"n": 1}
        assert client.post("/2", content=b"x").json() == {"n": 2}
    assert server.connections_opened == 1
    assert [r.path for r in server.requests] == ["/1", "/2"]


def test_connection_close_and_http10_are_honoured(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({}), ScriptedResponse.json({}))
    for request in (
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        data = raw_exchange(server, request)  # returns only because the server closed
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"{}")
    assert server.connections_opened == 2


def test_pipelined_requests_and_leading_crlf(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(chunks=[b"1"]), ScriptedResponse(chunks=[b"2"]))
    data = raw_exchange(
        server,
        b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"\r\n\r\n2")
    assert [r.path for r in server.requests] == ["/a", "/b"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab", 400),  # then EOF
        (b"GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_request_gets_error_and_close(
    server: ReplayServer, raw: bytes, status: int
) -> None:
    server.enqueue(ScriptedResponse.json({}))
    with connect(server) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)  # lets truncated requests hit EOF
        data = read_to_eof(sock)
    assert status_of(data) == status
    assert b"\r\nConnection: close\r\n" in data
    assert server.requests == []


def test_oversized_body_is_413(server: ReplayServer) -> None:
    with ReplayServer(max_body_bytes=100) as small:
        small.enqueue(ScriptedResponse.json({}))
        data = raw_exchange(small, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
        assert status_of(data) == 413
        chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"40\r\n" + b"a" * 64 + b"\r\n" + b"40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n"
        assert status_of(raw_exchange(small, chunked)) == 413
        response = httpx.post(small.url, content=b"x" * 5000)
        assert response.status_code == 413
        assert small.requests == []
        assert httpx.post(small.url, content=b"x" * 100).status_code == 200


# --------------------------------------------------------------------------- scripting


def test_empty_queue_answers_599(server: ReplayServer) -> None:
    response = httpx.get(server.url + "/nothing")
    assert response.status_code == 599
    assert response.reason_phrase == "Unknown"
    assert "no scripted response" in response.text and "/nothing" in response.text
    assert len(server.requests) == 1


def test_queue_is_fifo_and_reset_clears(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(chunks=[b"1"]))
    server.enqueue(ScriptedResponse(chunks=[b"2"]), ScriptedResponse(chunks=[b"3"]))
    with httpx.Client(base_url=server.url) as client:
        assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
        server.enqueue(ScriptedResponse(chunks=[b"4"]))
        server.reset()
        assert (server.requests, server.connections_opened, server.disconnects) == ([], 0, 0)
        assert client.get("/").status_code == 599


def test_handler_routes_and_errors_become_500() -> None:
    def handler(request: RecordedRequest) -> ScriptedResponse:
        if request.url_path == "/boom":
            raise ValueError("kaboom")
        if request.url_path == "/bad":
            return ScriptedResponse(fault="explode")
        if request.url_path == "/nonlatin":
            return ScriptedResponse(headers=[("X-Name", "\u2603")])
        return ScriptedResponse.json({"echo": request.method})

    with ReplayServer(handler) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.put("/ok").json() == {"echo": "PUT"}
        boom = client.get("/boom")
        assert boom.status_code == 500
        assert boom.text.strip() == "ValueError: kaboom"
        bad = client.get("/bad")
        assert bad.status_code == 500 and "unknown fault" in bad.text
        assert client.get("/nonlatin").status_code == 500
        assert [r.url_path for r in srv.requests] == ["/ok", "/boom", "/bad", "/nonlatin"]
        assert srv.connections_opened == 1  # 500s keep the connection


def test_url_before_start_raises() -> None:
    srv = ReplayServer()
    with pytest.raises(RuntimeError):
        _ = srv.url
    srv.stop()  # stopping a never-started server is a no-op


def test_concurrent_clients_are_all_recorded(server: ReplayServer) -> None:
    server.handler = lambda request: ScriptedResponse(chunks=[request.path.encode()])

    def fetch(i: int) -> None:
        assert httpx.get(f"{server.url}/c/{i}").text == f"/c/{i}"

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.path for r in server.requests) == sorted(f"/c/{i}" for i in range(16))
    assert server.connections_opened == 16


# --------------------------------------------------------------------------- faults


def fault_script(fault: str) -> ScriptedResponse:
    return ScriptedResponse(
        headers=[("Content-Type", "text/event-stream")],
        chunks=SSE,
        chunk_delay=0.02,
        fault=fault,
        fault_after_chunks=1,
    )


@pytest.mark.parametrize(
    ("fault", "errors", "expect_first_chunk"),
    [
        ("reset_before_headers", (httpx.ReadError, httpx.RemoteProtocolError), False),
        ("reset_after_headers", (httpx.ReadError, httpx.RemoteProtocolError), False),
        ("reset_mid_body", (httpx.ReadError, httpx.RemoteProtocolError), False),
        ("hang_before_headers", (httpx.ReadTimeout,), False),
        ("close_without_response", (httpx.RemoteProtocolError,), False),
        ("hang_after_body_start", (httpx.ReadTimeout,), True),
    ],
)
def test_fault_produces_client_failure(
    server: ReplayServer,
    fault: str,
    errors: tuple[type[Exception], ...],
    expect_first_chunk: bool,
) -> None:
    server.enqueue(fault_script(fault))
    received: list[bytes] = []
    with (
        pytest.raises(errors),
        httpx.Client(timeout=0.3) as client,
        client.stream("GET", server.url + "/f") as response,
    ):
        assert response.status_code == 200
        received.extend(response.iter_raw())
    assert SSE[: len(received)] == received  # whatever arrived is a prefix of the script
    if expect_first_chunk:
        assert received == SSE[:1]
    assert len(server.requests) == 1


def test_reset_is_a_real_rst_and_close_is_a_clean_fin(server: ReplayServer) -> None:
    request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    server.enqueue(ScriptedResponse(fault="reset_before_headers"))
    with connect(server) as sock:
        sock.sendall(request)
        with pytest.raises(ConnectionResetError):
            read_to_eof(sock)
    server.enqueue(ScriptedResponse(fault="close_without_response"))
    assert raw_exchange(server, request) == b""


async def test_async_reset_mid_body(server: ReplayServer) -> None:
    server.enqueue(fault_script("reset_mid_body"))
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            async with client.stream("GET", server.url) as response:
                async for _ in response.aiter_raw():
                    pass


# --------------------------------------------------------------------------- disconnects and stop


def test_disconnect_counted_when_client_closes_mid_stream(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse.json({}))
    httpx.get(server.url)  # a completed response is not a disconnect
    script = ScriptedResponse.sse([b"data: %d\n\n" % i for i in range(50)])
    script.chunk_delay = 0.05
    server.enqueue(script)
    with httpx.Client() as client, client.stream("GET", server.url) as response:
        first = next(response.iter_raw())
        assert first == b"data: 0\n\n"
    assert server.wait_for_disconnect(2.0)
    assert server.disconnects == 1


async def test_async_cancel_closes_connection(server: ReplayServer) -> None:
    server.enqueue(fault_script("hang_after_body_start"))

    async def consume() -> None:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("GET", server.url) as response,
        ):
            async for _ in response.aiter_raw():
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_for_disconnect, 2.0)


def test_disconnect_during_hang_before_headers(server: ReplayServer) -> None:
    server.enqueue(ScriptedResponse(fault="hang_before_headers"))
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        time.sleep(0.05)
    assert server.wait_for_disconnect(2.0)


def test_stop_is_fast_with_hung_and_stalled_connections() -> None:
    srv = ReplayServer().start()
    port = srv.port
    srv.enqueue(
        ScriptedResponse(fault="hang_before_headers"),
        ScriptedResponse(chunks=[b"a", b"b"], chunk_delay=30),
        ScriptedResponse(chunks=[b"x" * (32 * 1024 * 1024)]),  # client never reads it
    )
    sockets = []
    for path in (b"/hang", b"/stall", b"/big"):
        sock = connect(srv)
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        sockets.append(sock)
        deadline = time.monotonic() + 2
        while len(srv.requests) < len(sockets) and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.1)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    leftover = [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("ReplayServer-") and f"-{port}" in t.name
    ]
    assert leftover == []  # accept thread and all three connection threads have ended
    assert srv.disconnects == 0  # the server left, not the clients
    for sock in sockets:
        sock.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            read_to_eof(sock)  # the server closed every connection
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(("127.0.0.1", port))  # the port is free again
    probe.close()


def test_server_can_restart_after_stop() -> None:
    srv = ReplayServer()
    for _ in range(2):
        with srv:
            srv.enqueue(ScriptedResponse.json({}))
            assert httpx.get(srv.url).status_code == 200
    assert len(srv.requests) == 2
