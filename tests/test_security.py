"""Security and resource limits (issue 15), against loopback servers.

Keys never cross an origin or reach a log record; compression bombs stop at the reader's
limit with peak memory a small multiple of it; time limits hold where the HTTP stack alone
would not (headers that trickle, keep-alive comments); the pool holds 1,000 concurrent calls;
a stream dropped without ``aclose`` gives its connection back at once.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import importlib.util
import json
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import brotli
import httpx
import pytest
from answers import OPENAI_HI as ANSWER

from engine import AiClient, EngineError, Limits, SyncAiClient, Timeouts
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse

MODEL = "openai/gpt-4o-mini"
KEY = "sk-live-SECURITY-0123456789"
STREAM = [b'data: {"choices":[{"index":0,"delta":{"content":"he"}}]}\n\n',
          b'data: {"choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}]}'
          b"\n\n", b"data: [DONE]\n\n"]
MiB = 1024 * 1024


def url(server: ReplayServer) -> str:
    return server.url + "/v1"


async def call(mode: str, base: str, *, stream: bool = False, model: str = MODEL,
               key: str = KEY, **kwargs: Any) -> tuple[str | None, EngineError | None]:
    """One chat through the public API; (content, error)."""
    async def run_async() -> str | None:
        async with await AiClient.create(model, api_key=key, base_url=base, **kwargs) as c:
            if stream:
                handle = c.chat().user("hi").stream()
                async with handle:
                    async for _ in handle:
                        pass
                return handle.response.content
            return (await c.chat().user("hi").execute()).content

    def run_sync() -> str | None:
        sync_kwargs = dict(kwargs)
        if isinstance(sync_kwargs.get("http_client"), httpx.AsyncClient):
            sync_kwargs["http_client"] = httpx.Client(follow_redirects=True)
        with SyncAiClient.create(model, api_key=key, base_url=base, **sync_kwargs) as c:
            if stream:
                handle = c.chat().user("hi").stream()
                with handle:
                    for _ in handle:
                        pass
                return handle.response.content
            return c.chat().user("hi").execute().content

    try:
        return (await run_async() if mode == "async" else run_sync()), None
    except EngineError as error:
        return None, error


MODES = ["async", "sync"]


# ---------------------------------------------------------------- redirects

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_redirect_is_never_followed(mode: str, status: int, stream: bool) -> None:
    """Even a user client with follow_redirects=True: the key header must not reach the
    other origin, and a 3xx whose body looks like an answer is still an error."""
    with ReplayServer(lambda r: ScriptedResponse.json(ANSWER)) as other, \
            ReplayServer(lambda r: ScriptedResponse.json(
                ANSWER, status=status,
                headers=[("Location", other.url + "/v1/chat/completions?key=" + KEY)])) as first:
        http = httpx.AsyncClient(follow_redirects=True)
        content, error = await call(mode, url(first), stream=stream, http_client=http)
        await http.aclose()
        assert content is None and error is not None
        assert error.kind == "invalid_request" and error.status == status
        assert f"HTTP {status} redirect to" in error.message and "not followed" in error.message
        assert KEY not in str(error) and "[REDACTED]" in error.message
        assert other.requests == [] and len(first.requests) == 1


async def test_a_redirect_carrying_the_key_is_in_no_log_record(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    location = "http://127.0.0.1:9/elsewhere?key=" + KEY
    with ReplayServer(lambda r: ScriptedResponse.json(
            ANSWER, status=307, headers=[("Location", location)])) as server:
        for mode in MODES:
            _, error = await call(mode, url(server))
            assert error is not None and error.status == 307
    loggers = {record.name for record in caplog.records}
    assert {"httpcore.http11", "httpx"} <= loggers, loggers  # the records were there
    leaks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if KEY in r.getMessage()]
    assert leaks == []


# ---------------------------------------------------------------- keys in errors

def test_a_key_cut_by_a_stream_excerpt_leaves_no_prefix() -> None:
    """A malformed frame quoting the key near the excerpt's end: redacted before the cut."""
    bad = b"data: {" + b"x" * 48 + KEY.encode() + b"\n\n"  # the 60-char cut keeps 11 of it
    with ReplayServer(lambda r: ScriptedResponse.sse([bad])) as server, \
            SyncAiClient.create(MODEL, api_key=KEY, base_url=url(server)) as client, \
            pytest.raises(EngineError) as caught:
        list(client.chat().user("hi").stream())
    text = str(caught.value) + repr(caught.value)
    assert KEY[:6] not in text, text


def test_a_non_ascii_key_never_shows_in_the_error() -> None:
    key = "sk-ünïcode-0123456789"
    with pytest.raises(EngineError) as caught:
        SyncAiClient.create(MODEL, api_key=key)
    assert caught.value.kind == "invalid_request"
    assert "non-ASCII" in caught.value.message
    assert key not in repr(caught.value) and "0123456789" not in repr(caught.value)


def test_credentials_in_base_url_are_refused() -> None:
    with pytest.raises(EngineError) as caught:
        SyncAiClient.create(MODEL, api_key=KEY, base_url="http://user:hunter2@127.0.0.1/v1")
    assert caught.value.kind == "invalid_request" and "carries credentials" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_socks_proxy_without_its_extra_is_an_engine_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert importlib.util.find_spec("socksio") is None  # the case under test: extra missing
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(EngineError, match=r"httpx\[socks\]") as caught:
        SyncAiClient.create(MODEL, api_key=KEY)
    assert caught.value.kind == "invalid_request"


# ---------------------------------------------------------------- compression bombs

@contextmanager
def peak_memory() -> Iterator[list[int]]:
    tracemalloc.start()
    out: list[int] = []
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def gzip_bomb(size: int, layers: int = 1) -> bytes:
    data = gzip.compress(b"\0" * size, compresslevel=9)
    for _ in range(layers - 1):
        data = gzip.compress(data, compresslevel=9)
    return data


GZIP_BOMB = gzip_bomb(256 * MiB)  # 256 MiB of zeros in ~250 KB
BROTLI_BOMB = brotli.compress(b"\0" * (256 * MiB), quality=1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("coding", "body"), [("gzip", GZIP_BOMB), ("br", BROTLI_BOMB)])
async def test_a_compression_bomb_stops_at_the_body_limit(mode: str, coding: str,
                                                          body: bytes) -> None:
    script = ScriptedResponse(headers=[("Content-Type", "application/json"),
                                       ("Content-Encoding", coding)], chunks=[body])
    with ReplayServer(lambda r: script) as server, peak_memory() as peak:
        _, error = await call(mode, url(server), limits=Limits(max_body_bytes=MiB),
                              max_retries=0)
    assert error is not None and error.kind == "malformed_response"
    assert f"larger than {MiB} bytes" in error.message
    assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"


@pytest.mark.parametrize("mode", MODES)
async def test_a_compression_bomb_in_a_stream_stops_at_the_frame_limit(mode: str) -> None:
    script = ScriptedResponse(headers=[("Content-Type", "text/event-stream"),
                                       ("Content-Encoding", "gzip")],
                              chunks=[gzip.compress(b"data: " + b"x" * (64 * MiB))])
    with ReplayServer(lambda r: script) as server, peak_memory() as peak:
        _, error = await call(mode, url(server), stream=True,
                              limits=Limits(max_frame_bytes=MiB), max_retries=0)
    assert error is not None and error.kind == "malformed_response", error
    assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"


@pytest.mark.parametrize("mode", MODES)
async def test_an_error_body_bomb_is_read_only_to_its_limit(mode: str) -> None:
    script = ScriptedResponse(status=500, headers=[("Content-Type", "application/json"),
                                                   ("Content-Encoding", "gzip")],
                              chunks=[GZIP_BOMB])
    with ReplayServer(lambda r: script) as server, peak_memory() as peak:
        _, error = await call(mode, url(server), stream=True, max_retries=0)
    assert error is not None and error.kind == "server_error" and error.status == 500
    assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"


@pytest.mark.parametrize("mode", MODES)
async def test_stacked_codings_are_refused(mode: str) -> None:
    script = ScriptedResponse(headers=[("Content-Type", "application/json"),
                                       ("Content-Encoding", "gzip, gzip")],
                              chunks=[gzip_bomb(MiB, layers=2)])
    with ReplayServer(lambda r: script) as server:
        _, error = await call(mode, url(server), max_retries=0)
    assert error is not None and error.kind == "malformed_response"
    assert "stacked content codings are refused" in error.message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_compressed_answers_still_decode(mode: str, coding: str) -> None:
    raw = json.dumps(ANSWER).encode()
    if coding == "gzip":
        body = gzip.compress(raw)
    elif coding == "deflate":
        body = zlib.compress(raw)
    elif coding == "raw-deflate":  # some servers send deflate without the zlib wrapper
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = packer.compress(raw) + packer.flush()
    else:
        body = brotli.compress(raw)
    name = "deflate" if coding == "raw-deflate" else coding
    script = ScriptedResponse(headers=[("Content-Type", "application/json"),
                                       ("Content-Encoding", name)],
                              chunks=[body[:7], body[7:]])
    with ReplayServer(lambda r: script) as server:
        content, error = await call(mode, url(server))
        assert error is None and content == "hi"
        sent = server.requests[0].header("accept-encoding")
    assert sent == "gzip, deflate, br"


# ---------------------------------------------------------------- time limits

@contextmanager
def trickling_headers(seconds_per_byte: float) -> Iterator[str]:
    """A raw server whose status line and headers arrive one byte at a time, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn: socket.socket) -> None:
        conn.recv(65536)
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000
        try:
            for byte in head:
                if stop.is_set():
                    break
                conn.sendall(bytes([byte]))
                time.sleep(seconds_per_byte)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("mode", MODES)
async def test_total_holds_while_headers_trickle(mode: str) -> None:
    with trickling_headers(0.05) as base:
        started = time.monotonic()
        _, error = await call(mode, base, max_retries=0,
                              timeout=Timeouts(connect=1, read=1, write=1, pool=1, total=0.5))
        elapsed = time.monotonic() - started
    assert error is not None and error.kind == "timeout", error
    assert "total timeout of 0.5s" in error.message
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize("mode", MODES)
async def test_keep_alive_comments_do_not_hold_a_stream_open(mode: str) -> None:
    script = ScriptedResponse.sse([STREAM[0]] + [b": keep-alive\n\n"] * 100)
    script.chunk_delay = 0.05
    with ReplayServer(lambda r: script) as server:
        started = time.monotonic()
        _, error = await call(mode, url(server), stream=True, max_retries=0,
                              timeout=Timeouts(connect=1, read=0.4, write=1, pool=1))
        elapsed = time.monotonic() - started
    assert error is not None and error.kind == "timeout", error
    assert "no stream event within the read timeout of 0.4s" in error.message
    assert error.partial is not None and error.partial.content == "he"
    assert 0.35 < elapsed < 1.5, elapsed


@pytest.mark.parametrize("mode", MODES)
async def test_a_stream_answered_with_a_json_error_keeps_the_message(mode: str) -> None:
    body = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                      "code": "insufficient_quota"}}
    with ReplayServer(lambda r: ScriptedResponse.json(body, status=200)) as server:
        _, error = await call(mode, url(server), stream=True, max_retries=0)
    assert error is not None and error.kind == "quota_exhausted", error
    assert error.message == "You exceeded your current quota."


# ---------------------------------------------------------------- the pool under load

def answer_all(request: RecordedRequest) -> ScriptedResponse:
    if request.json().get("stream"):
        return ScriptedResponse.sse(STREAM)
    return ScriptedResponse.json(ANSWER)


async def test_a_thousand_concurrent_calls_on_one_default_client() -> None:
    with ReplayServer(answer_all) as server:
        async with await AiClient.create(MODEL, api_key=KEY, base_url=url(server),
                                         timeout=10) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.chat().user("hi").execute() for _ in range(1000)),
                return_exceptions=True)
            elapsed = time.monotonic() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        # The server notices a dropped connection a moment after the client dropped it:
        # a little slack over the pool size (without the cap: one connection per call).
        assert server.peak_connections <= Limits().max_connections + 10
    assert elapsed < 30, elapsed


@pytest.mark.parametrize("idle", [20, 5])
async def test_a_burst_leaves_at_most_max_idle_connections_open(idle: int) -> None:
    """After a burst, the httpx pool keeps max_idle_connections of its connections open
    and closes the rest (its pool checks every idle connection on each request)."""
    with ReplayServer(answer_all) as server:
        async with await AiClient.create(MODEL, api_key=KEY, base_url=url(server),
                                         limits=Limits(max_idle_connections=idle)) as client:
            await asyncio.gather(*(client.chat().user("hi").execute() for _ in range(60)))
            opened = server.connections_opened
            assert opened > idle  # the burst needed more than the idle pool
            pool = client._transport._client._transport._pool  # httpcore's connection pool
            assert len(pool.connections) == idle
            await client.chat().user("hi").execute()
            assert server.connections_opened == opened  # an idle one was reused


async def test_a_thousand_concurrent_streams_reuse_the_pool() -> None:
    async def one(client: AiClient) -> str | None:
        handle = client.chat().user("hi").stream()
        async with handle:
            async for _ in handle:
                pass
        return handle.response.content

    with ReplayServer(answer_all) as server:
        async with await AiClient.create(MODEL, api_key=KEY, base_url=url(server),
                                         timeout=10) as client:
            results = await asyncio.gather(*(one(client) for _ in range(1000)),
                                           return_exceptions=True)
        assert [r for r in results if r != "hello"] == []
        # At most max_in_flight at once; a connection whose drain ran out of time under
        # load is dropped and replaced, so the cumulative count may exceed it.
        assert server.peak_connections <= Limits().max_connections + 10


def test_a_dropped_sync_stream_releases_its_connection_at_once() -> None:
    gc.disable()  # the release must not depend on the cycle collector
    try:
        script = ScriptedResponse.sse([STREAM[0]] + [b": ping\n\n"] * 200)
        script.chunk_delay = 0.05
        with ReplayServer(lambda r: script) as server, \
                SyncAiClient.create(MODEL, api_key=KEY, base_url=url(server),
                                    limits=Limits(max_in_flight=1)) as client:
            stream = client.chat().user("hi").stream()
            for _ in stream:
                break
            del stream
            assert server.wait_for_disconnect(2.0)
            # The one in-flight slot is free again: the next call does not wait.
            server.handler = answer_all
            assert client.chat().user("again").timeout(Timeouts(total=2)).execute().content == "hi"
    finally:
        gc.enable()


async def test_a_dropped_async_stream_releases_its_connection_at_once() -> None:
    gc.disable()
    try:
        script = ScriptedResponse.sse([STREAM[0]] + [b": ping\n\n"] * 200)
        script.chunk_delay = 0.05
        with ReplayServer(lambda r: script) as server:
            async with await AiClient.create(MODEL, api_key=KEY, base_url=url(server),
                                             limits=Limits(max_in_flight=1)) as client:
                stream = client.chat().user("hi").stream()
                async for _ in stream:
                    break
                del stream
                for _ in range(20):  # the loop's finalizer hook schedules the close
                    await asyncio.sleep(0.01)
                assert server.wait_for_disconnect(2.0)
                server.handler = answer_all
                answer = await client.chat().user("again").timeout(Timeouts(total=2)).execute()
                assert answer.content == "hi"
    finally:
        gc.enable()
