"""The API key never leaks: one sentinel key through every reachable error path.

Every path is driven through the public API (``AiClient`` and
``SyncAiClient``, ``execute()`` and ``stream()``) against
``httpx.MockTransport`` and the loopback ``ReplayServer``, with providers
that echo the key back (as real ones do: "Incorrect API key provided:
sk-..."). After each call the sentinel must appear in no exception
(``str``, ``repr``, ``.message``, ``.code``, ``.partial``, formatted
traceback), no ``engine`` log record at DEBUG (message, format string and
arguments), no ``Stats``, client or ``PreparedRequest`` repr, and no fixture
written by the conformance recorder.

"Appears" is strict: the key itself, its URL-encoded and base64 forms, and
any run of 12 of its characters (an excerpt cut through a key still leaks it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engine import AiClient, EngineError, SyncAiClient, Timeouts
from engine.client import Clock
from engine.conformance.record import LeakError, build_fixture, record, write_fixture
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse
from engine.manifest import clear_cache

SENTINEL = "sk-live-SENTINEL-5ecret-9z"
# The same idea with characters that URL encoding changes (base64-style keys have them).
SPECIAL = "sk+live/SENTINEL=5ecret~9z+"
WINDOW = 12
STATUSES = [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 529]
OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                   "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

QUERY_MANIFEST = """\
manifest: 1
id: qauth
base_url: https://qauth.test/v1
auth: {scheme: query, param: key, env: [QAUTH_TEST_KEY]}
chat:
  path: /chat/completions
  body:
    model: "{{ model }}"
    messages: "{{ messages | map(attribute='content') | list }}"
    stream: "{{ stream or none }}"
  response:
    content: choices[0].message.content
    finish_reason: choices[0].finish_reason
  stream:
    body: {stream: true}
    framing: sse
    end: [{data: "[DONE]"}]
    events:
      - when: error
        error: {message: error.message, code: error.code}
      - when: "!error"
        content: choices[0].delta.content
        finish_reason: choices[0].finish_reason
errors:
  message: error.message
  code: error.code
  type: error.type
"""


# ---------------------------------------------------------------- leak detection

def _forms(secret: str) -> set[str]:
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             urllib.parse.quote(secret), json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    return {f for f in forms if f}


def _base64_forms(secret: str) -> set[str]:
    """The part of base64(secret) that is the same at every alignment (0, 1, 2 bytes)."""
    raw = secret.encode()
    out = set()
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        start = 4 if pad else 0
        inner = encoded[start:len(encoded) - 4]
        if len(inner) >= 8:
            out.add(inner)
    return out


def traces(text: str, secret: str) -> list[str]:
    """Every way *secret* (or a 12-character run of it) shows in *text*."""
    found = []
    for form in _forms(secret):
        for i in range(max(1, len(form) - WINDOW + 1)):
            piece = form[i:i + WINDOW]
            if piece in text:
                found.append(piece)
                break
    found += [b for b in _base64_forms(secret) if b in text]
    return found


def assert_clean(texts: list[str], *secrets: str, where: str = "") -> None:
    for text in texts:
        for secret in secrets:
            found = traces(text, secret)
            assert not found, (f"the key leaked{where}: {found} in {text[:400]!r}")


def error_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc),
             "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    if isinstance(exc, EngineError):
        texts += [exc.message, str(exc.code), repr(exc.partial), str(exc.partial)]
    return texts


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    out = []
    for rec in records:
        out += [rec.getMessage(), str(rec.msg)]
        args = rec.args if isinstance(rec.args, tuple) else (rec.args,)
        out += [str(a) for a in args] + [repr(a) for a in args]
        if rec.exc_info and rec.exc_info[1] is not None:
            out.append("".join(traceback.format_exception(*rec.exc_info)))
    return out


class FakeClock(Clock):
    """Retries without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def engine_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="engine")
    return caplog


@pytest.fixture
def qauth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A provider whose key travels in the URL (``auth.scheme: query``)."""
    (tmp_path / "qauth.yaml").write_text(QUERY_MANIFEST)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    yield "qauth"
    clear_cache()


# ---------------------------------------------------------------- scripted answers

@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)

    def mock(self) -> httpx.Response:
        return httpx.Response(self.status, headers=self.headers, content=b"".join(self.chunks))

    def scripted(self) -> ScriptedResponse:
        return ScriptedResponse(status=self.status, headers=list(self.headers),
                                chunks=list(self.chunks))


def echo_error(status: int, key: str = SENTINEL) -> Answer:
    body = {"error": {"message": f"Incorrect API key provided: {key}. Find your key at ...",
                      "type": f"invalid_request_error {key}", "code": key, "param": key}}
    return Answer(status, [("content-type", "application/json"), ("retry-after", "0"),
                           ("x-echo", key)], [json.dumps(body).encode()])


def _straddle(prefix: str, cut: int, key: str = SENTINEL, suffix: str = "") -> str:
    """``prefix`` padded so that *key* starts 18 characters before offset *cut*."""
    pad = max(0, cut - 18 - len(prefix))
    return prefix + "x" * pad + key + suffix


def sse(*events: str) -> list[bytes]:
    return [f"data: {e}\n\n".encode() for e in events]


CONTENT = json.dumps({"choices": [{"index": 0, "delta": {"content": "partial text"}}]})
DONE = "[DONE]"


def plain_bodies(key: str = SENTINEL) -> dict[str, Answer]:
    """Non-stream answers that reach the malformed/excerpt paths."""
    text_ct = [("content-type", "text/html")]
    json_ct = [("content-type", "application/json")]
    wrong_shape = {"detail": "x" * 100, "leak": key}
    nameless = {"choices": [{"message": {"tool_calls": [{"id": "x" * 100 + key, "type":
                "function", "function": {"arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}
    bad_args = {"choices": [{"message": {"tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "f", "arguments": _straddle("{", 80, key)}}]},
                "finish_reason": "tool_calls"}]}
    return {
        "html_502_key_at_excerpt_cut": Answer(502, text_ct, [_straddle(
            "<html><body>Bad gateway ", 200, key, "</body></html>").encode()]),
        "text_401": Answer(401, [("content-type", "text/plain")],
                           [f"invalid api key {key}".encode()]),
        "not_json_200_key_at_excerpt_cut": Answer(200, text_ct, [_straddle(
            "not json at all ", 118, key).encode()]),
        "wrong_shape_200_key_at_excerpt_cut": Answer(200, json_ct, [
            json.dumps(wrong_shape).encode()]),
        "tool_call_without_name": Answer(200, json_ct, [json.dumps(nameless).encode()]),
        "bad_tool_arguments": Answer(200, json_ct, [json.dumps(bad_args).encode()]),
        "empty_401": Answer(401, [], []),
    }


def stream_bodies(key: str = SENTINEL) -> dict[str, Answer]:
    ct = [("content-type", "text/event-stream")]
    error = json.dumps({"error": {"message": f"bad key {key}", "code": key, "type": key}})
    return {
        "in_stream_error": Answer(200, ct, sse(CONTENT, error)),
        "in_stream_error_first": Answer(200, ct, sse(error)),
        "ends_early": Answer(200, ct, sse(CONTENT, CONTENT)),
        "truncated_last_frame": Answer(200, ct, [*sse(CONTENT), _straddle(
            'data: {"error": {"message": "', 60, key).encode()]),
        "frame_not_json": Answer(200, ct, [*sse(CONTENT), f"data: {_straddle('oops ', 58, key)}"
                                           "\n\n".encode(), *sse(DONE)]),
        "frame_bad_utf8": Answer(200, ct, [*sse(CONTENT), b'data: {"x": "\xff\xfe ' + key.encode()
                                           + b'"}\n\n', *sse(DONE)]),
        "http_401_on_stream": echo_error(401, key),
    }


# ---------------------------------------------------------------- drivers

@dataclass
class Outcome:
    error: BaseException | None = None
    texts: list[str] = field(default_factory=list)
    requests: int = 0


async def drive_async(model: str | list[str], handler: Callable[[httpx.Request], httpx.Response],
                      *, stream: bool, api_key: Any = SENTINEL, retries: int = 1,
                      chat: Callable[[Any], Any] | None = None) -> Outcome:
    out = Outcome()

    def counting(request: httpx.Request) -> httpx.Response:
        out.requests += 1
        return handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(counting)) as http:
        client = await AiClient.create(model, api_key=api_key, http_client=http,
                                       max_retries=retries, clock=FakeClock())
        out.texts.append(repr(client))
        try:
            builder = client.chat().user("hello")
            if chat is not None:
                builder = chat(builder)
            if stream:
                handle = builder.stream()
                async with handle:
                    async for _ in handle:
                        pass
                out.texts += [repr(handle.response), repr(handle.stats)]
            else:
                resp, stats = await builder.execute_with_stats()
                out.texts += [repr(resp), repr(stats)]
        except Exception as exc:
            out.error = exc
            out.texts += error_texts(exc)
    return out


def drive_sync(model: str | list[str], handler: Callable[[httpx.Request], httpx.Response],
               *, stream: bool, api_key: Any = SENTINEL, retries: int = 1,
               chat: Callable[[Any], Any] | None = None) -> Outcome:
    out = Outcome()

    def counting(request: httpx.Request) -> httpx.Response:
        out.requests += 1
        return handler(request)

    with httpx.Client(transport=httpx.MockTransport(counting)) as http:
        client = SyncAiClient.create(model, api_key=api_key, http_client=http,
                                     max_retries=retries, clock=FakeClock())
        out.texts.append(repr(client))
        try:
            builder = client.chat().user("hello")
            if chat is not None:
                builder = chat(builder)
            if stream:
                with builder.stream() as handle:
                    for _ in handle:
                        pass
                out.texts += [repr(handle.response), repr(handle.stats)]
            else:
                resp, stats = builder.execute_with_stats()
                out.texts += [repr(resp), repr(stats)]
        except Exception as exc:
            out.error = exc
            out.texts += error_texts(exc)
    return out


async def drive(mode: str, model: str | list[str],
                handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> Outcome:
    if mode == "async":
        return await drive_async(model, handler, **kw)
    return await asyncio.to_thread(drive_sync, model, handler, **kw)


def check(out: Outcome, logs: pytest.LogCaptureFixture, *secrets: str) -> EngineError:
    """The call failed with an EngineError and nothing anywhere holds a secret."""
    assert out.error is not None, "expected the call to fail"
    assert isinstance(out.error, EngineError), (
        f"a non-EngineError escaped: {type(out.error).__name__}: {out.error}")
    assert_clean(out.texts, *(secrets or (SENTINEL,)), where=" into the error or a repr")
    assert_clean(log_texts(logs.records), *(secrets or (SENTINEL,)), where=" into a log record")
    assert logs.records, "expected DEBUG records from the engine logger"
    return out.error


MODES = ["async", "sync"]
CALLS = ["plain", "stream"]


# ---------------------------------------------------------------- HTTP errors (MockTransport)

@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", STATUSES)
async def test_http_errors_that_echo_the_key(status, mode, call, engine_logs):
    answer = echo_error(status)
    out = await drive(mode, "openai/gpt-4o-mini", lambda r: answer.mock(),
                      stream=call == "stream")
    err = check(out, engine_logs)
    assert err.status == status


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(plain_bodies()))
async def test_malformed_and_excerpted_bodies(name, mode, engine_logs):
    answer = plain_bodies()[name]
    out = await drive(mode, "openai/gpt-4o-mini", lambda r: answer.mock(), stream=False)
    check(out, engine_logs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(stream_bodies()))
async def test_stream_error_paths(name, mode, engine_logs):
    answer = stream_bodies()[name]
    out = await drive(mode, "openai/gpt-4o-mini", lambda r: answer.mock(), stream=True)
    err = check(out, engine_logs)
    if name == "ends_early":
        assert err.kind == "incomplete_stream" and err.partial is not None
        assert err.partial.content == "partial textpartial text"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["anthropic/claude-3-5-haiku-20241022",
                                      "gemini/gemini-2.0-flash", "deepseek/deepseek-chat",
                                      "ollama/llama3.1"])
async def test_other_providers_echoing_the_key(provider, mode, engine_logs):
    """Every shipped manifest's error mapping: a 401 and an in-stream error that echo the key."""
    answer = echo_error(401)
    out = await drive(mode, provider, lambda r: answer.mock(), stream=False)
    check(out, engine_logs)
    out = await drive(mode, provider, lambda r: answer.mock(), stream=True)
    check(out, engine_logs)


# ---------------------------------------------------------------- transport failures

TRANSPORT_ERRORS: dict[str, Callable[[httpx.Request], Exception]] = {
    "connect_error": lambda r: httpx.ConnectError(f"cannot connect to {r.url}", request=r),
    "connect_timeout": lambda r: httpx.ConnectTimeout(f"timed out connecting to {r.url}",
                                                      request=r),
    "read_timeout": lambda r: httpx.ReadTimeout(f"timed out reading {r.url}", request=r),
    "protocol_error": lambda r: httpx.RemoteProtocolError(
        f"peer closed the connection: {r.method} {r.url}", request=r),
    "header_echo": lambda r: httpx.LocalProtocolError(
        f"Illegal header value {r.headers.get('authorization', '')!r} for {r.url}"),
}


@pytest.mark.parametrize("key", [SENTINEL, SPECIAL], ids=["plain-key", "urlencoded-key"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failure", sorted(TRANSPORT_ERRORS))
async def test_transport_errors_that_include_the_url_of_a_query_key(failure, mode, key, qauth,
                                                                    engine_logs):
    """``auth.scheme: query`` puts the key in the URL; errors and logs that show it must not."""
    make = TRANSPORT_ERRORS[failure]

    def handler(request: httpx.Request) -> httpx.Response:
        raise make(request)

    for call in CALLS:
        engine_logs.clear()
        out = await drive(mode, f"{qauth}/m", handler, stream=call == "stream", api_key=key)
        check(out, engine_logs, key)


@pytest.mark.parametrize("key", [SENTINEL, SPECIAL], ids=["plain-key", "urlencoded-key"])
@pytest.mark.parametrize("mode", MODES)
async def test_http_errors_with_a_query_key(mode, key, qauth, engine_logs):
    answer = echo_error(401, key)
    for call in CALLS:
        out = await drive(mode, f"{qauth}/m", lambda r: answer.mock(), stream=call == "stream",
                          api_key=key)
        check(out, engine_logs, key)


@pytest.mark.parametrize("mode", MODES)
async def test_bearer_header_echoed_in_a_transport_error(mode, engine_logs):
    def handler(request: httpx.Request) -> httpx.Response:
        raise TRANSPORT_ERRORS["header_echo"](request)

    for call in CALLS:
        out = await drive(mode, "openai/gpt-4o-mini", handler, stream=call == "stream")
        check(out, engine_logs)


# ---------------------------------------------------------------- non-network refusals

@pytest.mark.parametrize("mode", MODES)
async def test_missing_key_error(mode, monkeypatch, engine_logs):
    """No key for this provider (the sentinel is another provider's) -> authentication."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
    for call in CALLS:
        out = await drive(mode, "openai/gpt-4o-mini", lambda r: httpx.Response(200, json=OK),
                          stream=call == "stream", api_key=None)
        assert isinstance(out.error, EngineError) and out.error.kind == "authentication"
        assert out.requests == 0
        assert_clean(out.texts + log_texts(engine_logs.records), SENTINEL)


@pytest.mark.parametrize("mode", MODES)
async def test_capability_refusals(mode, engine_logs):
    def choose(builder: Any) -> Any:
        return builder.tools([{"name": "f", "parameters": {"type": "object"}}]).tool_choice(
            "required")

    for call in CALLS:
        out = await drive(mode, "ollama/llama3.1", lambda r: httpx.Response(200, json=OK),
                          stream=call == "stream", chat=choose)
        assert isinstance(out.error, EngineError) and out.error.kind == "invalid_request"
        assert out.requests == 0
        assert_clean(out.texts + log_texts(engine_logs.records), SENTINEL)


KEYS = {"openai": SENTINEL, "anthropic": SENTINEL + "-a", "gemini": SENTINEL + "-g"}
CHAIN = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022", "gemini/gemini-2.0-flash"]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("mode", MODES)
async def test_fallback_chain_that_fails_everywhere(mode, call, engine_logs):
    every_key = " ".join(KEYS.values())

    def handler(request: httpx.Request) -> httpx.Response:
        return echo_error(503, every_key).mock()

    out = await drive(mode, CHAIN, handler, stream=call == "stream", api_key=KEYS)
    check(out, engine_logs, *KEYS.values())
    assert out.requests == 6  # three models, one retry each
    assert any("falling back" in r.getMessage() for r in engine_logs.records)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("mode", MODES)
async def test_fallback_chain_that_succeeds_last(mode, call, engine_logs):
    gemini_ok = {"candidates": [{"content": {"parts": [{"text": "fine"}], "role": "model"},
                                 "finishReason": "STOP"}]}
    gemini_stream = [f"data: {json.dumps(gemini_ok)}\r\n\r\n".encode()]

    def handler(request: httpx.Request) -> httpx.Response:
        if "googleapis" in request.url.host:
            if call == "stream":
                return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                      content=b"".join(gemini_stream))
            return httpx.Response(200, json=gemini_ok)
        return echo_error(529 if "anthropic" in request.url.host else 500,
                          " ".join(KEYS.values())).mock()

    out = await drive(mode, CHAIN, handler, stream=call == "stream", api_key=KEYS)
    assert out.error is None, repr(out.error)
    assert_clean(out.texts + log_texts(engine_logs.records), *KEYS.values())


def test_prepared_request_and_client_reprs(qauth):
    """``PreparedRequest``/client reprs for bearer, header and query schemes hide the key."""
    from engine.manifest import load_manifest
    from engine.protocol.plan import Chain
    from engine.types import ChatRequest, Message

    request = ChatRequest((Message.user("hi"),))
    texts = []
    for model, key in [("openai/gpt-4o", SENTINEL), ("anthropic/claude-3-5-haiku-20241022",
                                                     SENTINEL), (f"{qauth}/m", SENTINEL),
                       (f"{qauth}/m", SPECIAL)]:
        chain = Chain(model, load_manifest, api_key=key, base_url=None, max_retries=0,
                      retry=None, clock=None)
        for stream in (False, True):
            prepared = chain.primary.prepare(request, stream)
            texts += [repr(prepared), str(prepared), prepared.describe(), repr(chain),
                      repr(chain.primary)]
        assert_clean(texts, key)


# ---------------------------------------------------------------- real HTTP (ReplayServer)

def _answer_for(request: RecordedRequest) -> ScriptedResponse:
    """The test name travels as the user message; the server answers accordingly."""
    body = request.json()
    messages = body.get("messages") or body.get("contents") or []
    last = messages[-1]
    text = last if isinstance(last, str) else last.get("content") or last["parts"][0]["text"]
    key = SPECIAL if "special" in text else SENTINEL
    name = text.split(":", 1)[1]
    if name.startswith("status-"):
        return echo_error(int(name.split("-")[1]), key).scripted()
    if name in stream_bodies():
        return stream_bodies(key)[name].scripted()
    if name in plain_bodies():
        return plain_bodies(key)[name].scripted()
    if name == "reset-mid-stream":
        return ScriptedResponse(status=200, headers=[("content-type", "text/event-stream")],
                                chunks=sse(CONTENT, CONTENT), fault="reset_mid_body",
                                fault_after_chunks=1)
    if name == "hang":
        return ScriptedResponse(fault="hang_before_headers")
    if name == "ok":
        return ScriptedResponse.json(OK)
    if name.startswith("rec-"):
        return RECORDER_ANSWERS[name]()
    return ScriptedResponse(status=418, chunks=[b"unknown test"])


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(_answer_for) as srv:
        yield srv


async def drive_real(mode: str, url: str, name: str, *, stream: bool, model: str =
                     "openai/gpt-4o-mini", key: str = SENTINEL,
                     timeout: float | Timeouts = 10.0) -> Outcome:
    tag = "special" if key == SPECIAL else "plain"

    async def run_async() -> Outcome:
        out = Outcome()
        async with await AiClient.create(model, api_key=key, base_url=url, max_retries=1,
                                         clock=FakeClock(), timeout=timeout) as client:
            out.texts.append(repr(client))
            try:
                builder = client.chat().user(f"{tag}:{name}")
                if stream:
                    handle = builder.stream()
                    async with handle:
                        async for _ in handle:
                            pass
                    out.texts.append(repr(handle.stats))
                else:
                    out.texts.append(repr((await builder.execute_with_stats())[1]))
            except Exception as exc:
                out.error = exc
                out.texts += error_texts(exc)
        return out

    def run_sync() -> Outcome:
        out = Outcome()
        with SyncAiClient.create(model, api_key=key, base_url=url, max_retries=1,
                                 clock=FakeClock(), timeout=timeout) as client:
            out.texts.append(repr(client))
            try:
                builder = client.chat().user(f"{tag}:{name}")
                if stream:
                    with builder.stream() as handle:
                        for _ in handle:
                            pass
                    out.texts.append(repr(handle.stats))
                else:
                    out.texts.append(repr(builder.execute_with_stats()[1]))
            except Exception as exc:
                out.error = exc
                out.texts += error_texts(exc)
        return out

    return await run_async() if mode == "async" else await asyncio.to_thread(run_sync)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", STATUSES)
async def test_real_http_errors_that_echo_the_key(status, mode, server, engine_logs):
    for call in CALLS:
        out = await drive_real(mode, server.url + "/v1", f"status-{status}",
                               stream=call == "stream")
        err = check(out, engine_logs)
        assert err.status == status


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", [*sorted(stream_bodies()), "reset-mid-stream"])
async def test_real_stream_failures(name, mode, server, engine_logs):
    out = await drive_real(mode, server.url + "/v1", name, stream=True)
    check(out, engine_logs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(plain_bodies()))
async def test_real_malformed_bodies(name, mode, server, engine_logs):
    out = await drive_real(mode, server.url + "/v1", name, stream=False)
    check(out, engine_logs)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("key", [SENTINEL, SPECIAL], ids=["plain-key", "urlencoded-key"])
@pytest.mark.parametrize("mode", MODES)
async def test_connection_refused(mode, key, qauth, engine_logs):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    for model in ("openai/gpt-4o-mini", f"{qauth}/m"):
        for call in CALLS:
            out = await drive_real(mode, url, "ok", stream=call == "stream", model=model,
                                   key=key)
            err = check(out, engine_logs, key)
            assert err.kind == "connection"


@pytest.mark.parametrize("key", [SENTINEL, SPECIAL], ids=["plain-key", "urlencoded-key"])
@pytest.mark.parametrize("mode", MODES)
async def test_timeouts(mode, key, qauth, server, engine_logs):
    timeout = Timeouts(connect=2.0, read=0.2, write=2.0, pool=2.0)
    for model in ("openai/gpt-4o-mini", f"{qauth}/m"):
        out = await drive_real(mode, server.url + "/v1", "hang", stream=False, model=model,
                               key=key, timeout=timeout)
        err = check(out, engine_logs, key)
        assert err.kind == "timeout"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " \t"])
async def test_key_with_control_characters(mode, suffix, server, engine_logs):
    """A key pasted with a trailing newline (or other whitespace, or a control character) is
    refused at ``create``, before any request, naming the problem and never the key."""
    key = SENTINEL + suffix
    before = len(server.requests)
    with pytest.raises(EngineError) as caught:
        if mode == "async":
            await AiClient.create("openai/gpt-4o-mini", api_key=key, base_url=server.url)
        else:
            SyncAiClient.create("openai/gpt-4o-mini", api_key=key, base_url=server.url)
    err = caught.value
    assert err.kind == "invalid_request" and err.retryable is False
    problem = {"\n": "a line break", "\r\n": "a line break", "\x00": "a control character",
               " \t": "whitespace"}[suffix]
    assert f"the API key (api_key) contains {problem}" in err.message
    assert len(server.requests) == before
    assert_clean(error_texts(err) + log_texts(engine_logs.records), SENTINEL)


async def test_query_key_in_no_log_line_of_any_logger(qauth, server, caplog):
    """The README promises the key is in no log line; with ``auth.scheme: query`` every
    logger that prints the request URL (the engine's and httpx's) must hide it."""
    caplog.set_level(logging.DEBUG)
    for key in (SENTINEL, SPECIAL):
        caplog.clear()
        out = await drive_real("async", server.url + "/v1", "ok", stream=False,
                               model=f"{qauth}/m", key=key)
        assert out.error is None, repr(out.error)
        leaks = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                 if any(traces(t, key) for t in log_texts([r]))]
        assert leaks == [], f"log lines showing the key: {leaks}"


# ---------------------------------------------------------------- the fixture recorder

def _rec_body(key: str = SENTINEL) -> bytes:
    return json.dumps({"error": {"message": f"Incorrect API key provided: {key}. You can "
                                            "find your API key at https://example.test.",
                                 "type": "invalid_request_error",
                                 "code": "invalid_api_key"}}).encode()


def _split_at_key(body: bytes, key: str = SENTINEL) -> list[bytes]:
    cut = body.index(key.encode()) + len(key) // 2
    return [body[:cut], body[cut:]]


RECORDER_ANSWERS: dict[str, Callable[[], ScriptedResponse]] = {
    "rec-401-one-chunk": lambda: ScriptedResponse(
        status=401, headers=[("content-type", "application/json"), ("x-echo", SENTINEL)],
        chunks=[_rec_body()]),
    "rec-401-key-split-across-reads": lambda: ScriptedResponse(
        status=401, headers=[("content-type", "application/json")],
        chunks=_split_at_key(_rec_body()), chunk_delay=0.1),
    "rec-401-not-utf8": lambda: ScriptedResponse(
        status=401, headers=[("content-type", "application/json")],
        chunks=[b"\xff" + _rec_body()]),
    "rec-stream-error-split": lambda: ScriptedResponse(
        status=200, headers=[("content-type", "text/event-stream")],
        chunks=[*sse(CONTENT)[:1], *_split_at_key(
            f"data: {json.dumps({'error': {'message': f'bad key {SENTINEL}'}})}\n\n".encode())],
        chunk_delay=0.1),
}


@pytest.mark.parametrize("name", sorted(RECORDER_ANSWERS))
async def test_recorder_writes_no_trace_of_the_key(name, server, tmp_path, engine_logs):
    request: dict[str, Any] = {"messages": [{"role": "user", "content": f"plain:{name}"}]}
    if "stream" in name:
        request["stream"] = True
    capture, expect, key = await record("openai/gpt-4o-mini", request, api_key=SENTINEL,
                                        base_url=server.url + "/v1")
    assert key == SENTINEL and capture.status in (200, 401)
    fixture = build_fixture(capture, expect, request, model_id="openai/gpt-4o-mini",
                            scenario="error_auth", key=key, recorded_by="test")
    out = tmp_path / "fixture.yaml"
    # The recorder redacts the key from every part of the capture (headers, a key split
    # across reads, non-UTF-8 bodies, stream frames), so each of these is written, clean.
    write_fixture(fixture, out, key)
    text = out.read_text()
    assert_clean([text], SENTINEL, where=" into the fixture file")
    answer = yaml.safe_load(text)["answer"]
    if "chunks" in answer:
        body = "".join(answer["chunks"]).encode()
    else:
        body = b"".join(base64.b64decode(c) for c in answer["chunks_base64"])
    assert SENTINEL.encode() not in body, (
        f"the recorded answer still holds the key once its chunks are joined: {body[:200]!r}")
    assert_clean(log_texts(engine_logs.records), SENTINEL)


async def test_recorder_with_a_query_key(qauth, server, tmp_path):
    """The recorder redacts a key that travelled in the URL, in any encoding."""
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "special:status-401"}]}
    capture, expect, key = await record(f"{qauth}/m", request, api_key=SPECIAL,
                                        base_url=server.url + "/v1")
    fixture = build_fixture(capture, expect, request, model_id=f"{qauth}/m",
                            scenario="error_auth", key=key, recorded_by="test")
    out = tmp_path / "fixture.yaml"
    try:
        write_fixture(fixture, out, key)
    except LeakError:
        return
    text = out.read_text()
    assert_clean([text], SPECIAL, where=" into the fixture file")
    assert "{api_key}" in text


def test_leak_detector_self_check():
    """The detector itself: it sees every form, and ignores redacted text."""
    assert traces(f"x {SENTINEL} y", SENTINEL)
    assert traces(f"x {SENTINEL[:14]}", SENTINEL)
    assert traces(f"x {SENTINEL[-13:]}", SENTINEL)
    assert traces(urllib.parse.quote(SPECIAL, safe=""), SPECIAL)
    assert traces(base64.b64encode(b"ab" + SENTINEL.encode()).decode(), SENTINEL)
    assert traces(base64.b64encode(b"Bearer " + SENTINEL.encode()).decode(), SENTINEL)
    assert not traces("openai: authentication (HTTP 401): Incorrect key [REDACTED]", SENTINEL)
