"""Fault injection through the public API, async and sync, over a real loopback socket.

Every case drives ``AiClient`` / ``SyncAiClient`` against ``conformance.server.ReplayServer``
(or a raw socket for faults below HTTP) and asserts three things: the outcome (error kind or
success), how many requests were made (attempts), and, for retried cases, that every backoff
delay the client asked its clock for lies within the configured bounds (full jitter) or equals
the provider's hint. Retries never sleep: the clock is fake for sleeping, real for timing.

After every call the API key must appear nowhere: not in ``str``/``repr``/``message`` of the
error and not in any record of the ``engine`` logger at DEBUG. All keys contain the marker
``SENTINEL`` and nothing else does; any run of 12 characters of a key also counts, so a
truncated key (a partial leak) is caught too.

Decisions where the documentation is silent (see the module-level notes in the report):

* A connection reset (RST) while a body is being read is a transport failure, ``connection``
  (engine/transport.py: httpx errors become ``timeout``/``connection``); ``incomplete_stream``
  is for a body that *ends* cleanly before the end marker (README, protocols/README.md). Both
  carry the partial response once an event was delivered, and neither is retried then.
* ``x-should-retry: true`` "forces the retry decision" (protocols/README.md): a 400 carrying
  it is retried.

The last test prints one row per fault as a Markdown table (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import brotli
import pytest

from engine import (
    AiClient,
    ChatResponse,
    EngineError,
    Limits,
    RetryPolicy,
    Stats,
    StreamEvent,
    SyncAiClient,
    Timeouts,
)
from engine.client import Clock
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse

# --------------------------------------------------------------------------- constants

SENTINEL = "sk-live-SENTINEL-0000faults"
ANTHROPIC_KEY = "sk-ant-SENTINEL-1111fallback"
LEAK_MARKER = "SENTINEL"  # in every key above, nowhere else
FRAGMENT = 12  # a run of this many characters of a key counts as a (partial) leak
KEY_FRAGMENTS = frozenset(key[i:i + FRAGMENT] for key in (SENTINEL, ANTHROPIC_KEY)
                          for i in range(len(key) - FRAGMENT + 1))

OPENAI = "openai/gpt-4o"
ANTHROPIC = "anthropic/claude-3-5-sonnet-20241022"
GEMINI = "gemini/gemini-2.0-flash"
PREFIX = {OPENAI: "/v1", ANTHROPIC: "", GEMINI: "/v1beta"}
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

# Full jitter: delay for 0-based retry i is in [0, min(backoff_max, backoff_base * 2**i)].
POLICY = RetryPolicy(max_retries=2, backoff_base=0.25, backoff_max=0.75, max_retry_after=60.0)
FAST = Timeouts(connect=1.0, read=1.0, write=1.0, pool=1.0)

# "aiohttp": the async client over the optional aiohttp transport (engine[aiohttp]).
MODES = ("async", "sync", "aiohttp")


# --------------------------------------------------------------------------- the clock


class FakeClock(Clock):
    """Records every backoff delay instead of sleeping; monotonic time stays real.

    Its jitter comes from a seeded generator, so the async and sync drivers
    asked for the same retries wait exactly the same (compared at the end).
    """

    def __init__(self) -> None:
        super().__init__(random.Random(1234))
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


# --------------------------------------------------------------------------- payloads


def sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


def openai_body(text: str = "Hello from openai") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def openai_ok(text: str = "Hello from openai") -> ScriptedResponse:
    return ScriptedResponse.json(openai_body(text))


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    return sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "gpt-4o", "choices": [{"index": 0, "delta": delta or {},
                                                 "finish_reason": finish}]})


def openai_chunks(pieces: Sequence[str], *, done: bool = True) -> list[bytes]:
    chunks = [openai_chunk({"role": "assistant", "content": ""})]
    chunks += [openai_chunk({"content": p}) for p in pieces]
    chunks.append(openai_chunk({}, finish="stop"))
    chunks.append(sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                 "total_tokens": 5 + len(pieces)}}))
    return [*chunks, b"data: [DONE]\n\n"] if done else chunks


def openai_stream_ok(pieces: Sequence[str] = ("Hello", " from", " openai")) -> ScriptedResponse:
    return ScriptedResponse.sse(openai_chunks(pieces))


def openai_error(status: int, message: str, etype: str, code: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> ScriptedResponse:
    return ScriptedResponse.json({"error": {"message": message, "type": etype, "param": None,
                                            "code": code}}, status=status, headers=headers)


def anthropic_ok(text: str = "Hello from anthropic") -> ScriptedResponse:
    return ScriptedResponse.json({
        "id": "msg_1", "type": "message", "role": "assistant", "model": ANTHROPIC.split("/")[1],
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 3}})


def anthropic_chunks(pieces: Sequence[str]) -> list[bytes]:
    start = sse({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant",
        "model": ANTHROPIC.split("/")[1], "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}},
        "message_start")
    block = sse({"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}, "content_block_start")
    deltas = [sse({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": p}}, "content_block_delta")
              for p in pieces]
    tail = [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                 "usage": {"output_tokens": len(pieces)}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop")]
    return [start, block, *deltas, *tail]


def anthropic_stream_ok(pieces: Sequence[str] = ("Hello", " from", " anthropic")
                        ) -> ScriptedResponse:
    return ScriptedResponse.sse(anthropic_chunks(pieces))


def anthropic_error(status: int, etype: str, message: str,
                    headers: list[tuple[str, str]] | None = None) -> ScriptedResponse:
    return ScriptedResponse.json({"type": "error", "error": {"type": etype, "message": message}},
                                 status=status, headers=headers)


def gemini_body(text: str = "Hello from gemini") -> dict[str, Any]:
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3,
                              "totalTokenCount": 8}}


def ok_for(model: str, stream: bool) -> ScriptedResponse:
    if model == OPENAI:
        return openai_stream_ok() if stream else openai_ok()
    if model == ANTHROPIC:
        return anthropic_stream_ok() if stream else anthropic_ok()
    if stream:
        return ScriptedResponse.sse([sse(gemini_body())])
    return ScriptedResponse.json(gemini_body())


EXPECTED_TEXT = {OPENAI: "Hello from openai", ANTHROPIC: "Hello from anthropic",
                 GEMINI: "Hello from gemini"}

HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
            b"</body>\r\n</html>\r\n")


def html(status: int) -> ScriptedResponse:
    return ScriptedResponse(status=status, headers=[("Content-Type", "text/html")],
                            chunks=[HTML_502])


# --------------------------------------------------------------------------- driving calls


@dataclass
class Outcome:
    """What one call through the public API produced."""

    events: list[StreamEvent] = field(default_factory=list)
    response: ChatResponse | None = None
    stats: Stats | None = None
    error: EngineError | None = None
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(e.as_content_delta.text for e in self.events if e.is_content_delta)

    @property
    def kind(self) -> str:
        return self.error.kind if self.error is not None else "success"


class Driver:
    """One client (async or sync) with a fake clock; ``call`` runs one chat call."""

    last: Driver | None = None  # the latest one, for the outcome comparison in observe()

    def __init__(self, mode: str, model: str | list[str], base_url: str | dict[str, str], *,
                 api_key: str | dict[str, str] = SENTINEL, max_retries: int | None = 2,
                 retry: RetryPolicy | None = POLICY, timeout: Timeouts = FAST,
                 limits: Limits | None = None) -> None:
        self.mode = mode
        self.clock = FakeClock()
        self._options: dict[str, Any] = dict(
            api_key=api_key, base_url=base_url, max_retries=max_retries, retry=retry,
            timeout=timeout, clock=self.clock, limits=limits)
        self._model = model
        self.client: Any = None
        Driver.last = self

    async def __aenter__(self) -> Driver:
        if self.mode == "aiohttp":
            self.client = await AiClient.create(self._model, transport="aiohttp",
                                                **self._options)
        elif self.mode == "async":
            self.client = await AiClient.create(self._model, **self._options)
        else:
            self.client = SyncAiClient.create(self._model, **self._options)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.mode != "sync":
            await self.client.aclose()
        else:
            await asyncio.to_thread(self.client.close)

    @property
    def sleeps(self) -> list[float]:
        return self.clock.sleeps

    async def call(self, *, stream: bool = False, **retry: Any) -> Outcome:
        if self.mode != "sync":
            return await self._acall(stream, retry)
        return await asyncio.to_thread(self._scall, stream, retry)

    def _builder(self, retry: dict[str, Any]) -> Any:
        builder = self.client.chat().user("Say hello.")
        if retry:
            builder.retry(**retry)
        return builder

    async def _acall(self, stream: bool, retry: dict[str, Any]) -> Outcome:
        out = Outcome()
        started = time.monotonic()
        try:
            if stream:
                handle = self._builder(retry).stream()
                async with handle:
                    async for event in handle:
                        out.events.append(event)
                out.response, out.stats = handle.response, handle.stats
            else:
                out.response, out.stats = await self._builder(retry).execute_with_stats()
        except EngineError as error:
            out.error = error
        out.elapsed = time.monotonic() - started
        return out

    def _scall(self, stream: bool, retry: dict[str, Any]) -> Outcome:
        out = Outcome()
        started = time.monotonic()
        try:
            if stream:
                handle = self._builder(retry).stream()
                with handle:
                    for event in handle:
                        out.events.append(event)
                out.response, out.stats = handle.response, handle.stats
            else:
                out.response, out.stats = self._builder(retry).execute_with_stats()
        except EngineError as error:
            out.error = error
        out.elapsed = time.monotonic() - started
        return out


def url(server: ReplayServer, model: str) -> str:
    return server.url + PREFIX[model]


def always(response: ScriptedResponse) -> Callable[[RecordedRequest], ScriptedResponse]:
    return lambda _request: response


def sequence(*responses: ScriptedResponse) -> Callable[[RecordedRequest], ScriptedResponse]:
    """Answer in order, then keep answering the last one."""
    queue = deque(responses)
    lock = threading.Lock()

    def handler(_request: RecordedRequest) -> ScriptedResponse:
        with lock:
            return queue.popleft() if len(queue) > 1 else queue[0]

    return handler


# --------------------------------------------------------------------------- checks and rows

ROWS: list[tuple[str, str, str, str, str]] = []  # (fault, mode, outcome, attempts, leaked)


def leak_places(error: EngineError | None, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Where the key (or a fragment of it) shows up."""
    texts: dict[str, str] = {}
    if error is not None:
        texts.update({"str": str(error), "repr": repr(error), "message": error.message,
                      "code": str(error.code), "args": str(error.args)})
    texts["log"] = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    return [where for where, text in texts.items()
            if LEAK_MARKER in text or any(f in text for f in KEY_FRAGMENTS)]


def attempts_logged(caplog: pytest.LogCaptureFixture) -> int:
    """Requests the engine put on the wire (it logs ``-> METHOD url`` for each)."""
    return sum(1 for r in caplog.records
               if r.name == "engine" and r.getMessage().startswith("-> "))


# fault -> mode -> what the call produced, compared between the drivers at the end.
SIGNATURES: dict[str, dict[str, tuple[Any, ...]]] = {}


def signature(out: Outcome, attempts: int) -> tuple[Any, ...]:
    """Everything about a call that must not depend on the driver (not wall-clock time)."""
    error = out.error
    events = tuple((e.type, repr(e.payload)) for e in out.events
                   if not e.is_tool_call_started and not e.is_tool_call_ended)
    sleeps = tuple(Driver.last.sleeps) if Driver.last is not None else ()
    return (
        out.kind, events, attempts, sleeps,
        None if error is None else (error.status, error.retryable, error.attempts, error.code,
                                    error.partial.content if error.partial else None),
        None if out.response is None else (out.response.content, out.response.finish_reason,
                                           out.response.usage),
        None if out.stats is None else (out.stats.attempts, out.stats.total_tokens),
    )


def observe(fault: str, mode: str, out: Outcome, attempts: int,
            caplog: pytest.LogCaptureFixture) -> None:
    """Record the row for the summary table, then assert nothing leaked."""
    SIGNATURES.setdefault(fault, {})[mode] = signature(out, attempts)
    leaks = leak_places(out.error, caplog)
    ROWS.append((fault, mode, out.kind, str(attempts), "YES: " + ",".join(leaks) if leaks
                 else "no"))
    assert leaks == [], f"the key leaked into {leaks}: {out.error!r}"


def check_backoff(sleeps: Sequence[float], retries: int, policy: RetryPolicy = POLICY) -> None:
    """Exactly *retries* waits, each within full-jitter bounds for its retry number."""
    assert len(sleeps) == retries, sleeps
    for index, delay in enumerate(sleeps):
        cap = min(policy.backoff_max, policy.backoff_base * 2**index)
        assert 0.0 <= delay <= cap, (index, delay, cap)


def key_sent(server: ReplayServer, key: str = SENTINEL) -> bool:
    """The key really went out (so the leak checks are meaningful)."""
    return all(any(key in value for _, value in r.headers) for r in server.requests)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def engine_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="engine")


# =========================================================================== 1. refused


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return int(port)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_connection_refused_is_retried_then_raised(mode: str, stream: bool,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    async with Driver(mode, OPENAI, base, max_retries=3) as d:
        out = await d.call(stream=stream)
    attempts = attempts_logged(caplog)
    observe(f"connection refused ({'stream' if stream else 'plain'})", mode, out, attempts, caplog)
    assert out.kind == "connection", out.error
    assert out.error is not None and out.error.retryable is True and out.error.status is None
    assert attempts == 4 and out.error.attempts == 4
    assert out.events == []
    check_backoff(d.sleeps, 3)


# =========================================================================== 2. resets


def json_in_two_chunks() -> list[bytes]:
    body = json.dumps(openai_body("a fairly long answer " * 20)).encode()
    return [body[: len(body) // 2], body[len(body) // 2:]]


TRANSPORT_FAULTS = {
    "reset before headers": ScriptedResponse(fault="reset_before_headers"),
    "reset after headers": ScriptedResponse(headers=[("Content-Type", "application/json")],
                                            chunks=json_in_two_chunks(),
                                            fault="reset_after_headers"),
    "reset mid-body": ScriptedResponse(headers=[("Content-Type", "application/json")],
                                       chunks=json_in_two_chunks(), fault="reset_mid_body",
                                       fault_after_chunks=1),
    "close without response": ScriptedResponse(fault="close_without_response"),
}


@pytest.mark.parametrize("fault", list(TRANSPORT_FAULTS))
async def test_transport_fault_on_plain_call_is_connection_and_retried(
        mode: str, fault: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = always(TRANSPORT_FAULTS[fault])
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call()
    observe(f"{fault} (plain)", mode, out, len(server.requests), caplog)
    assert out.kind == "connection", out.error
    assert out.error is not None and out.error.retryable is True
    assert len(server.requests) == 3 and out.error.attempts == 3
    assert key_sent(server)
    check_backoff(d.sleeps, 2)


async def test_reset_before_headers_on_a_stream_is_retried_then_succeeds(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(ScriptedResponse(fault="reset_before_headers"), openai_stream_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=True)
    observe("reset before headers (stream), then 200", mode, out, len(server.requests), caplog)
    assert out.error is None, out.error
    assert out.text == "Hello from openai"
    assert out.stats is not None and out.stats.attempts == 2
    assert len(server.requests) == 2
    check_backoff(d.sleeps, 1)


async def test_reset_mid_stream_delivers_events_then_raises_without_retry(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    chunks = openai_chunks(["Once", " upon", " a time"])
    server.handler = sequence(
        ScriptedResponse(headers=[("Content-Type", "text/event-stream")], chunks=chunks,
                         fault="reset_mid_body", fault_after_chunks=3),
        openai_stream_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=True)
    observe("reset mid-stream after 2 events", mode, out, len(server.requests), caplog)
    assert out.text == "Once upon"
    assert out.kind == "connection", out.error
    assert out.error is not None and out.error.partial is not None
    assert out.error.partial.content == "Once upon"
    assert len(server.requests) == 1 and out.error.attempts == 1
    assert d.sleeps == []


async def test_clean_eof_mid_stream_is_incomplete_stream_without_retry(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(ScriptedResponse.sse(openai_chunks(["Once", " upon"])[:3]),
                              openai_stream_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=True)
    observe("clean EOF mid-stream (no [DONE])", mode, out, len(server.requests), caplog)
    assert out.text == "Once upon"
    assert out.kind == "incomplete_stream", out.error
    assert out.error is not None and out.error.partial is not None
    assert out.error.partial.content == "Once upon"
    assert len(server.requests) == 1
    assert d.sleeps == []


# =========================================================================== 3. timeouts


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_server_that_never_answers_is_a_read_timeout(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = always(ScriptedResponse(fault="hang_before_headers"))
    timeout = Timeouts(connect=1.0, read=0.3, write=1.0, pool=1.0)
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=1, timeout=timeout) as d:
        out = await d.call(stream=stream)
    observe(f"no answer, read=0.3 ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.kind == "timeout", out.error
    # The request reached the server, which may be generating (and billing) the answer:
    # a read timeout is not retried, and says what to do instead.
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1 and out.error.attempts == 1
    assert "read timeout of 0.3s" in out.error.message and ".stream()" in out.error.message
    assert 0.25 <= out.elapsed < 1.5, out.elapsed  # one attempt of ~0.3 s
    assert d.sleeps == []


def trickle(chunk: bytes, *, content_type: str = "application/json") -> ScriptedResponse:
    """A 200 whose body arrives one chunk every 0.2 s, for ~40 s: never finishes in a test."""
    return ScriptedResponse(headers=[("Content-Type", content_type)], chunks=[chunk] * 200,
                            chunk_delay=0.2)


async def test_total_timeout_cuts_a_trickling_body(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = always(trickle(b" "))  # JSON allows leading whitespace forever
    timeout = Timeouts(connect=1.0, read=5.0, write=1.0, pool=1.0, total=0.5)
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=1, timeout=timeout) as d:
        out = await d.call()
    observe("body trickles forever, total=0.5 (plain)", mode, out, len(server.requests), caplog)
    assert out.kind == "timeout", out.error
    assert len(server.requests) == 1 and out.error is not None and out.error.attempts == 1
    assert "total timeout of 0.5s" in out.error.message and out.error.retryable is False
    assert 0.4 <= out.elapsed < 1.5, out.elapsed  # one attempt of ~0.5 s, not a 5 s read
    assert d.sleeps == []


async def test_total_timeout_cuts_a_trickling_stream_after_its_events(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = always(trickle(openai_chunk({"content": "tick"}),
                                    content_type="text/event-stream"))
    timeout = Timeouts(connect=1.0, read=5.0, write=1.0, pool=1.0, total=0.5)
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2, timeout=timeout) as d:
        out = await d.call(stream=True)
    observe("stream trickles forever, total=0.5", mode, out, len(server.requests), caplog)
    assert out.text and set(out.text.split("tick")) == {""}, out.text
    assert out.kind == "timeout", out.error
    assert len(server.requests) == 1, "nothing is retried once an event was delivered"
    assert out.error is not None and out.error.partial is not None
    assert out.error.partial.content == out.text
    assert out.elapsed < 2.0, out.elapsed
    assert d.sleeps == []


@contextlib.contextmanager
def full_accept_queue() -> Iterator[tuple[int, bool]]:
    """A listener with backlog 0 whose accept queue is filled; yields (port, kernel_accepts)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        time.sleep(0.05)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect(address)
            accepts = True
        except OSError:
            accepts = False
        finally:
            probe.close()
        yield int(address[1]), accepts
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_connect_timeout_when_the_accept_queue_is_full(
        mode: str, caplog: pytest.LogCaptureFixture) -> None:
    timeout = Timeouts(connect=0.3, read=0.3, write=1.0, pool=1.0)
    with full_accept_queue() as (port, kernel_accepts):
        async with Driver(mode, OPENAI, f"http://127.0.0.1:{port}/v1", max_retries=1,
                          timeout=timeout) as d:
            out = await d.call()
    attempts = attempts_logged(caplog)
    label = ("accept queue full (kernel accepted: read timeout)" if kernel_accepts
             else "accept queue full, connect=0.3")
    observe(label, mode, out, attempts, caplog)
    # Either way (SYN dropped -> connect timeout; or accepted but never read -> read timeout)
    # the caller sees a retryable timeout after ~0.3 s per attempt.
    assert out.kind == "timeout", out.error
    assert attempts == 2 and out.error is not None and out.error.attempts == 2
    assert out.elapsed < 2.0, out.elapsed
    check_backoff(d.sleeps, 1)
    if not kernel_accepts:
        assert "connect" in out.error.message.lower(), out.error.message


# =========================================================================== 4. stall


async def test_stream_stalling_between_events_times_out_after_them(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    chunks = openai_chunks(["first", " second", " third"])
    server.handler = sequence(
        ScriptedResponse(headers=[("Content-Type", "text/event-stream")], chunks=chunks,
                         fault="hang_after_body_start", fault_after_chunks=3),
        openai_stream_ok())
    timeout = Timeouts(connect=1.0, read=0.3, write=1.0, pool=1.0)
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2, timeout=timeout) as d:
        out = await d.call(stream=True)
    observe("stream stalls after 2 events, read=0.3", mode, out, len(server.requests), caplog)
    assert out.text == "first second"
    assert out.kind == "timeout", out.error
    assert out.error is not None and out.error.partial is not None
    assert out.error.partial.content == "first second"
    assert len(server.requests) == 1 and out.error.attempts == 1
    assert out.elapsed < 1.5, out.elapsed
    assert d.sleeps == []


async def test_end_marker_then_an_idle_connection_still_answers_promptly(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    """[DONE] arrives, then the server keeps the connection open and silent.

    The answer stands once the end marker arrived: both drivers drain for at
    most DRAIN_SECONDS, then give the connection up, and never raise.
    """
    chunks = openai_chunks(["Hello", " there"])
    server.handler = sequence(
        ScriptedResponse(headers=[("Content-Type", "text/event-stream")], chunks=chunks,
                         fault="hang_after_body_start", fault_after_chunks=len(chunks)),
        openai_ok("next"))
    timeout = Timeouts(connect=1.0, read=5.0, write=1.0, pool=1.0)
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2, timeout=timeout) as d:
        out = await d.call(stream=True)
        after = await d.call()
    observe("[DONE], then the connection stays open and idle", mode, out,
            len(server.requests) - 1, caplog)
    assert out.error is None, out.error
    assert out.text == "Hello there"
    assert out.response is not None and out.response.finish_reason == "stop"
    assert out.elapsed < 1.5, f"{mode}: waited {out.elapsed:.2f}s for a body after [DONE]"
    assert after.error is None and after.response is not None
    assert after.response.content == "next"


# =========================================================================== 5. retry hints


def http_date_in(seconds: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return email.utils.format_datetime(when, usegmt=True)


def openai_429(message: str = "Rate limit reached for gpt-4o.",
               headers: list[tuple[str, str]] | None = None) -> ScriptedResponse:
    return openai_error(429, message, "requests", "rate_limit_exceeded", headers)


def gemini_429(delay: str) -> ScriptedResponse:
    return ScriptedResponse.json({"error": {
        "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": delay}]}}, status=429)


# (label, model, factory of the 429, expected hint, tolerance)
HINTS: list[tuple[str, str, Callable[[], ScriptedResponse], float, float]] = [
    ("retry-after: 2", OPENAI, lambda: openai_429(headers=[("retry-after", "2")]), 2.0, 0.0),
    ("retry-after-ms: 1500", OPENAI, lambda: openai_429(headers=[("retry-after-ms", "1500")]),
     1.5, 0.0),
    ("retry-after: HTTP-date +3s", OPENAI,
     lambda: openai_429(headers=[("retry-after", http_date_in(3))]), 3.0, 1.5),
    ("body: 'try again in 1.5s'", OPENAI,
     lambda: openai_429("Rate limit reached for gpt-4o. Please try again in 1.5s."), 1.5, 0.0),
    ("gemini RetryInfo 34.4s", GEMINI, lambda: gemini_429("34.4s"), 34.4, 0.0),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("label", "model", "make", "hint", "tolerance"), HINTS,
                         ids=[h[0] for h in HINTS])
async def test_rate_limit_hint_is_reported_and_honoured(
        mode: str, stream: bool, label: str, model: str, make: Callable[[], ScriptedResponse],
        hint: float, tolerance: float, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    async with Driver(mode, model, url(server, model), max_retries=2) as d:
        # Without retries the hint is on the error...
        server.handler = always(make())
        failed = await d.call(stream=stream, max_retries=0)
        observe(f"429 {label} (no retries left)", mode, failed, len(server.requests), caplog)
        assert failed.kind == "rate_limited", failed.error
        assert failed.error is not None and failed.error.status == 429
        assert failed.error.retryable is True
        assert failed.error.retry_after == pytest.approx(hint, abs=tolerance or 1e-9)
        assert len(server.requests) == 1 and d.sleeps == []
        # ...and with retries the client waits exactly that long, then succeeds.
        server.handler = sequence(make(), ok_for(model, stream))
        out = await d.call(stream=stream)
    observe(f"429 {label}, then 200 ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests) - 1, caplog)
    assert out.error is None, out.error
    assert (out.text if stream else out.response.content) == EXPECTED_TEXT[model]  # type: ignore
    assert out.stats is not None and out.stats.attempts == 2
    assert len(server.requests) == 3
    assert len(d.sleeps) == 1
    assert d.sleeps[0] == pytest.approx(hint, abs=tolerance or 1e-9)
    assert key_sent(server, SENTINEL)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_hint_above_max_retry_after_gives_up_at_once(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(openai_429(headers=[("retry-after", "999")]), openai_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=stream)
    observe(f"429 retry-after: 999 > max_retry_after 60 ({'stream' if stream else 'plain'})",
            mode, out, len(server.requests), caplog)
    assert out.kind == "rate_limited", out.error
    assert out.error is not None and out.error.retry_after == 999.0
    assert len(server.requests) == 1 and out.error.attempts == 1
    assert d.sleeps == []


# =========================================================================== 6. 5xx then 200

TRANSIENT = [
    ("500", OPENAI, lambda: openai_error(500, "The server had an error.", "server_error")),
    ("502", OPENAI, lambda: openai_error(502, "Bad gateway.", "server_error")),
    ("503", OPENAI, lambda: openai_error(503, "The engine is currently overloaded.",
                                         "server_error")),
    ("529 anthropic", ANTHROPIC, lambda: anthropic_error(529, "overloaded_error", "Overloaded")),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("label", "model", "make"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
async def test_transient_status_then_success(
        mode: str, stream: bool, label: str, model: str, make: Callable[[], ScriptedResponse],
        server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(make(), ok_for(model, stream))
    async with Driver(mode, model, url(server, model), max_retries=2) as d:
        out = await d.call(stream=stream)
    observe(f"{label}, then 200 ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.error is None, out.error
    text = out.text if stream else out.response.content  # type: ignore[union-attr]
    assert text == EXPECTED_TEXT[model]
    assert out.stats is not None and out.stats.attempts == 2
    assert len(server.requests) == 2
    check_backoff(d.sleeps, 1)


# =========================================================================== 7. x-should-retry


async def test_x_should_retry_false_stops_a_529(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(
        anthropic_error(529, "overloaded_error", "Overloaded",
                        headers=[("x-should-retry", "false")]),
        anthropic_ok())
    async with Driver(mode, ANTHROPIC, url(server, ANTHROPIC), max_retries=2) as d:
        out = await d.call()
    observe("529 + x-should-retry: false", mode, out, len(server.requests), caplog)
    assert out.kind == "overloaded", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


async def test_x_should_retry_true_retries_a_400(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(
        anthropic_error(400, "invalid_request_error", "Something transient upstream.",
                        headers=[("x-should-retry", "true")]),
        anthropic_ok())
    async with Driver(mode, ANTHROPIC, url(server, ANTHROPIC), max_retries=2) as d:
        out = await d.call()
    observe("400 + x-should-retry: true, then 200", mode, out, len(server.requests), caplog)
    assert out.error is None, (
        f"x-should-retry: true must force a retry; got {out.error!r} after "
        f"{len(server.requests)} request(s)")
    assert out.response is not None and out.response.content == EXPECTED_TEXT[ANTHROPIC]
    assert out.stats is not None and out.stats.attempts == 2
    assert len(server.requests) == 2
    check_backoff(d.sleeps, 1)


# =========================================================================== 8. compression

ENCODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "br": brotli.compress}


@pytest.mark.parametrize("encoding", list(ENCODERS))
async def test_compressed_json_body_is_decoded(
        mode: str, encoding: str, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    body = ENCODERS[encoding](json.dumps(openai_body()).encode())
    server.handler = always(ScriptedResponse(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", encoding)],
        chunks=[body]))
    async with Driver(mode, OPENAI, url(server, OPENAI)) as d:
        out = await d.call()
    observe(f"{encoding} JSON body", mode, out, len(server.requests), caplog)
    assert out.error is None, out.error
    assert out.response is not None and out.response.content == EXPECTED_TEXT[OPENAI]
    assert len(server.requests) == 1


@pytest.mark.parametrize("encoding", list(ENCODERS))
async def test_compressed_stream_is_decoded(
        mode: str, encoding: str, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    body = ENCODERS[encoding](b"".join(openai_chunks(["Hello", " from", " openai"])))
    server.handler = always(ScriptedResponse(
        headers=[("Content-Type", "text/event-stream"), ("Content-Encoding", encoding)],
        chunks=[body[: len(body) // 2], body[len(body) // 2:]]))
    async with Driver(mode, OPENAI, url(server, OPENAI)) as d:
        out = await d.call(stream=True)
    observe(f"{encoding} SSE stream", mode, out, len(server.requests), caplog)
    assert out.error is None, out.error
    assert out.text == EXPECTED_TEXT[OPENAI]
    assert len(server.requests) == 1


CORRUPT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff\xfe\xfd not deflate" * 4


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_corrupt_gzip_is_malformed_and_not_retried(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    ctype = "text/event-stream" if stream else "application/json"
    server.handler = sequence(ScriptedResponse(
        headers=[("Content-Type", ctype), ("Content-Encoding", "gzip")], chunks=[CORRUPT_GZIP]),
        ok_for(OPENAI, stream))
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=stream)
    observe(f"corrupt gzip ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


# =========================================================================== 9. not JSON


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_html_502_from_a_proxy_is_a_retried_server_error(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = always(html(502))
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=stream)
    observe(f"HTML 502 page ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.kind == "server_error", out.error
    assert out.error is not None and out.error.status == 502 and out.error.retryable is True
    assert "502 Bad Gateway" in out.error.message
    assert len(server.requests) == 3 and out.error.attempts == 3
    check_backoff(d.sleeps, 2)


async def test_html_200_is_malformed_and_not_retried(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(html(200), openai_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call()
    observe("200 with an HTML body", mode, out, len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


async def test_json_of_the_wrong_shape_is_malformed(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(ScriptedResponse.json({"id": "x", "object": "chat.completion"}),
                              openai_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call()
    observe("200 JSON without choices", mode, out, len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


# =========================================================================== 10. size limits


async def test_oversized_body_is_malformed(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(openai_body("x" * 50_000)).encode()
    assert len(body) > 50_000
    server.handler = sequence(ScriptedResponse(headers=[("Content-Type", "application/json")],
                                               chunks=[body[i:i + 8192]
                                                       for i in range(0, len(body), 8192)]),
                              openai_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2,
                      limits=Limits(max_body_bytes=10_000)) as d:
        out = await d.call()
    observe("50 kB body, max_body_bytes=10000", mode, out, len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


async def test_oversized_stream_frame_is_malformed(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    big = openai_chunk({"content": "y" * 5_000})
    assert len(big) > 5_000
    pieces = [big[i:i + 1000] for i in range(0, len(big), 1000)]
    server.handler = sequence(ScriptedResponse.sse(pieces), openai_stream_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2,
                      limits=Limits(max_frame_bytes=1000)) as d:
        out = await d.call(stream=True)
    observe("5 kB SSE data line, max_frame_bytes=1000", mode, out, len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert out.text == ""
    assert len(server.requests) == 1
    assert d.sleeps == []


# =========================================================================== 11. bad UTF-8


async def test_invalid_utf8_json_body_is_malformed(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(openai_body("@@")).encode().replace(b"@@", b"\xff\xfe\xc3")
    server.handler = sequence(ScriptedResponse(headers=[("Content-Type", "application/json")],
                                               chunks=[body]), openai_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call()
    observe("invalid UTF-8 in a JSON body", mode, out, len(server.requests), caplog)
    assert out.kind == "malformed_response", out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1
    assert d.sleeps == []


async def test_invalid_utf8_in_a_stream_is_malformed(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    chunks = openai_chunks(["fine", "@@"])
    chunks[2] = chunks[2].replace(b"@@", b"\xff\xfe\xc3")
    server.handler = sequence(ScriptedResponse.sse(chunks), openai_stream_ok())
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=2) as d:
        out = await d.call(stream=True)
    observe("invalid UTF-8 in an SSE event", mode, out, len(server.requests), caplog)
    assert out.text == "fine"
    assert out.kind == "malformed_response", out.error
    assert len(server.requests) == 1
    assert d.sleeps == []


# =========================================================================== 12. never retried

NEVER = {
    "401 (body echoes the key)": lambda: openai_error(
        401, f"Incorrect API key provided: {SENTINEL}. You can find your API key at "
             "https://platform.openai.com/account/api-keys.", "invalid_request_error",
        "invalid_api_key"),
    "400 invalid_request": lambda: openai_error(
        400, "Invalid value for 'temperature'.", "invalid_request_error", None),
}
NEVER_KIND = {"401 (body echoes the key)": "authentication",
              "400 invalid_request": "invalid_request"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("label", list(NEVER))
async def test_auth_and_invalid_request_are_never_retried(
        mode: str, stream: bool, label: str, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(NEVER[label](), ok_for(OPENAI, stream))
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=3) as d:
        out = await d.call(stream=stream)
    observe(f"{label}, max_retries=3 ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.kind == NEVER_KIND[label], out.error
    assert out.error is not None and out.error.retryable is False
    assert len(server.requests) == 1 and out.error.attempts == 1
    assert d.sleeps == []


# (status, the excerpt length the engine quotes from a non-JSON body, expected kind)
ECHO_PAGES = [(401, 200, "authentication"), (200, 120, "malformed_response")]


@pytest.mark.parametrize(("status", "cut", "kind"), ECHO_PAGES,
                         ids=[f"{e[0]}-excerpt-{e[1]}" for e in ECHO_PAGES])
async def test_proxy_page_echoing_the_key_at_the_excerpt_cut_does_not_leak(
        mode: str, status: int, cut: int, kind: str, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """A non-JSON page is quoted by excerpt; the cut must not expose part of the key."""
    head = "<html><body>"
    page = head + "." * (cut - 19 - len(head) - 7) + "Bearer " + SENTINEL + " rejected</body>"
    start = page.index(SENTINEL)  # an excerpt of `cut` characters keeps 19 of its 27
    assert start + FRAGMENT < cut < start + len(SENTINEL)
    server.handler = always(ScriptedResponse(status=status,
                                             headers=[("Content-Type", "text/html")],
                                             chunks=[page.encode()]))
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=3) as d:
        out = await d.call()
    observe(f"{status} HTML page echoing the key across the {cut}-char excerpt cut", mode, out,
            len(server.requests), caplog)
    assert out.kind == kind, out.error
    assert len(server.requests) == 1


# =========================================================================== 13. fallback

CHAIN = [ANTHROPIC, OPENAI]


def chain_driver(mode: str, server: ReplayServer, max_retries: int = 1) -> Driver:
    return Driver(mode, CHAIN, {"anthropic": server.url, "openai": server.url + "/v1"},
                  api_key={"anthropic": ANTHROPIC_KEY, "openai": SENTINEL},
                  max_retries=max_retries)


def route(anthropic: Sequence[ScriptedResponse], openai: Sequence[ScriptedResponse]
          ) -> Callable[[RecordedRequest], ScriptedResponse]:
    handlers = {ANTHROPIC_PATH: sequence(*anthropic), OPENAI_PATH: sequence(*openai)}
    return lambda request: handlers[request.url_path](request)


def hits(server: ReplayServer, path: str) -> int:
    return sum(1 for r in server.requests if r.url_path == path)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_fallback_after_retries_are_exhausted(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = route([anthropic_error(529, "overloaded_error", "Overloaded")],
                           [ok_for(OPENAI, stream)])
    async with chain_driver(mode, server, max_retries=1) as d:
        out = await d.call(stream=stream)
    observe(f"fallback: anthropic 529 x2 -> openai 200 ({'stream' if stream else 'plain'})",
            mode, out, len(server.requests), caplog)
    assert out.error is None, out.error
    text = out.text if stream else out.response.content  # type: ignore[union-attr]
    assert text == EXPECTED_TEXT[OPENAI]
    assert out.stats is not None
    assert (out.stats.model, out.stats.provider) == ("gpt-4o", "openai")
    assert hits(server, ANTHROPIC_PATH) == 2 and hits(server, OPENAI_PATH) == 1
    assert out.stats.attempts == len(server.requests) == 3
    check_backoff(d.sleeps, 1)
    for request in server.requests:  # each provider got its own key
        key = ANTHROPIC_KEY if request.url_path == ANTHROPIC_PATH else SENTINEL
        assert any(key in value for _, value in request.headers)


async def test_fallback_on_not_found(mode: str, server: ReplayServer,
                                     caplog: pytest.LogCaptureFixture) -> None:
    server.handler = route([anthropic_error(404, "not_found_error", "model: nope")],
                           [openai_ok()])
    async with chain_driver(mode, server, max_retries=2) as d:
        out = await d.call()
    observe("fallback: anthropic 404 -> openai 200", mode, out, len(server.requests), caplog)
    assert out.error is None, out.error
    assert out.stats is not None
    assert (out.stats.model, out.stats.provider) == ("gpt-4o", "openai")
    assert hits(server, ANTHROPIC_PATH) == 1 and hits(server, OPENAI_PATH) == 1
    assert out.stats.attempts == len(server.requests) == 2
    assert d.sleeps == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_no_fallback_on_authentication(
        mode: str, stream: bool, server: ReplayServer,
        caplog: pytest.LogCaptureFixture) -> None:
    server.handler = route([anthropic_error(401, "authentication_error", "invalid x-api-key")],
                           [ok_for(OPENAI, stream)])
    async with chain_driver(mode, server, max_retries=2) as d:
        out = await d.call(stream=stream)
    observe(f"fallback chain: anthropic 401 ({'stream' if stream else 'plain'})", mode, out,
            len(server.requests), caplog)
    assert out.kind == "authentication", out.error
    assert out.error is not None and out.error.provider == "anthropic"
    assert hits(server, ANTHROPIC_PATH) == 1 and hits(server, OPENAI_PATH) == 0
    assert out.error.attempts == 1
    assert d.sleeps == []


async def test_no_fallback_once_a_stream_event_was_delivered(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    chunks = anthropic_chunks(["Hel", "lo"])
    server.handler = route([ScriptedResponse(headers=[("Content-Type", "text/event-stream")],
                                             chunks=chunks, fault="reset_mid_body",
                                             fault_after_chunks=3)],
                           [openai_stream_ok()])
    async with chain_driver(mode, server, max_retries=2) as d:
        out = await d.call(stream=True)
    observe("fallback chain: anthropic stream reset after first delta", mode, out,
            len(server.requests), caplog)
    assert out.text == "Hel"
    assert out.kind == "connection", out.error
    assert out.error is not None and out.error.provider == "anthropic"
    assert out.error.partial is not None and out.error.partial.content == "Hel"
    assert hits(server, ANTHROPIC_PATH) == 1 and hits(server, OPENAI_PATH) == 0
    assert d.sleeps == []


# =========================================================================== 14. cancellation


def endless_stream() -> ScriptedResponse:
    return ScriptedResponse(headers=[("Content-Type", "text/event-stream")],
                            chunks=openai_chunks(["first", " second", " third"]),
                            fault="hang_after_body_start", fault_after_chunks=3)


async def test_cancelled_stream_disconnects_and_the_client_stays_usable(
        mode: str, server: ReplayServer, caplog: pytest.LogCaptureFixture) -> None:
    server.handler = sequence(endless_stream(), openai_ok("again"))
    async with Driver(mode, OPENAI, url(server, OPENAI), max_retries=0) as d:
        seen: list[str] = []
        if mode != "sync":
            two = asyncio.Event()

            async def consume() -> None:
                handle = d.client.chat().user("Say hello.").stream()
                async with handle:
                    async for event in handle:
                        if event.is_content_delta:
                            seen.append(event.as_content_delta.text)
                            if len(seen) == 2:
                                two.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(two.wait(), 2.0)
            await asyncio.sleep(0.05)  # the task is now blocked reading the hung body
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            label = "task cancelled mid-stream"
        else:
            def abandon() -> None:  # the blocking twin has no cancellation: leave early
                handle = d.client.chat().user("Say hello.").stream()
                with handle:
                    for event in handle:
                        if event.is_content_delta:
                            seen.append(event.as_content_delta.text)
                            if len(seen) == 2:
                                break

            await asyncio.to_thread(abandon)
            label = "stream left early (close) mid-stream"
        assert seen == ["first", " second"]
        assert await asyncio.to_thread(server.wait_for_disconnect, 2.0), \
            "the server never saw the client go away"
        after = await d.call()
    ROWS.append((label + "; then a new call", mode, f"disconnect; next call {after.kind}",
                 str(len(server.requests)),
                 "no" if not leak_places(after.error, caplog) else "YES"))
    assert leak_places(after.error, caplog) == []
    assert after.error is None, after.error
    assert after.response is not None and after.response.content == "again"
    assert len(server.requests) == 2


# =========================================================================== summary


def table(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    merged: dict[str, dict[str, tuple[str, str, str]]] = {}
    for fault, mode, kind, attempts, leaked in rows:
        merged.setdefault(fault, {})[mode] = (kind, attempts, leaked)
    lines = ["| fault | mode | outcome | attempts | leaked |", "|---|---|---|---|---|"]
    for fault, by_mode in merged.items():
        values = set(by_mode.values())
        if len(values) == 1 and len(by_mode) == len(MODES):
            kind, attempts, leaked = values.pop()
            lines.append(f"| {fault} | {'+'.join(MODES)} | {kind} | {attempts} | {leaked} |")
            continue
        for mode, (kind, attempts, leaked) in by_mode.items():
            lines.append(f"| {fault} | {mode} | {kind} | {attempts} | {leaked} |")
    return "\n".join(lines)


def agree(fault: str, a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal, except that a wait read from an HTTP-date (1 s resolution, against the wall
    clock at the moment of the call) may differ by up to a second."""
    if "HTTP-date" not in fault:
        return a == b
    waits_a, waits_b = a[3], b[3]
    return (a[:3] + a[4:] == b[:3] + b[4:] and len(waits_a) == len(waits_b)
            and all(abs(x - y) <= 1.05 for x, y in zip(waits_a, waits_b, strict=True)))


@pytest.mark.parametrize("other", ["sync", "aiohttp"])
def test_zz_drivers_and_transports_agree(other: str) -> None:
    """Every fault run through the async driver over httpx, the sync driver, and the async
    driver over aiohttp produced the same events, errors, attempts and waits."""
    compared = {fault: modes for fault, modes in SIGNATURES.items()
                if "async" in modes and other in modes}
    assert len(compared) >= 30, sorted(SIGNATURES)  # the suite above ran in every mode
    differ = {fault: modes for fault, modes in compared.items()
              if not agree(fault, modes["async"], modes[other])}
    assert differ == {}, "\n".join(f"{f}:\n  async {m['async']}\n  {other} {m[other]}"
                                    for f, m in differ.items())


def test_zz_print_fault_table() -> None:
    """Print one row per fault (collected by the tests above, in run order)."""
    print()
    print(table(ROWS))
