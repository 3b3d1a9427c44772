"""Fuzzing the parsers a provider (or a proxy, or an attacker) feeds bytes into.

Property: whatever arrives, the engine answers with events, a ChatResponse
or an :class:`EngineError` — never another exception, never a hang.

* ``StreamDecoder`` for every shipped manifest: random bytes, and mutations
  (byte-level and JSON-level) of real recorded streams, fed at random split
  points. Errors must land in ``decoder.error`` (the sans-I/O contract).
* ``engine.protocol.accumulate.map_whole`` for every manifest: any JSON value (with
  the ``NaN``/``Infinity`` that ``json.loads`` accepts) and mutations of the
  real bodies in ``tests/data/responses`` (dropped keys, wrong types, nulls).
* ``engine.classify.classify`` on arbitrary status, headers and body.
* The public clients (async and sync, plain and stream) over a
  ``MockTransport`` answering a random status, headers and bytes.
* Optionally, a short coverage-guided atheris run (skipped when atheris is
  not installed).

Examples are bounded (``max_examples`` ≤ 200, small inputs); every decode and
call is timed so that pathological slowness fails instead of passing slowly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from decoding import Fed as StreamDecoder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine import AiClient, EngineError, SyncAiClient
from engine.client import Clock
from engine.events import StreamEvent
from engine.manifest import Manifest, clear_cache, load_manifest
from engine.protocol.accumulate import map_whole as map_response
from engine.protocol.classify import classify
from engine.types import ChatResponse

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ["openai", "anthropic", "gemini", "deepseek", "ollama"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022",
          "gemini": "gemini-2.0-flash", "deepseek": "deepseek-chat", "ollama": "llama3.1"}
SLOW = 2.0  # seconds for one small example: anything slower is a bug

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
FUZZ_SMALL = settings(FUZZ, max_examples=50)


@pytest.fixture(autouse=True, scope="module")
def _builtin_manifests_only() -> Any:
    saved = os.environ.pop("AI_PROTOCOL_PATH", None)
    clear_cache()
    yield
    if saved is not None:
        os.environ["AI_PROTOCOL_PATH"] = saved
    clear_cache()


def manifest(provider: str) -> Manifest:
    return load_manifest(provider)


# ---------------------------------------------------------------- seeds

def _fixture_bodies(provider: str) -> list[bytes]:
    """The stream answers of the provider's conformance fixtures, as bytes."""
    out = []
    for path in sorted((ROOT / "conformance" / "fixtures" / provider).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        answer = doc.get("answer") or {}
        if not (doc.get("request") or {}).get("stream"):
            continue
        if "chunks" in answer:
            out.append("".join(answer["chunks"]).encode())
        elif "chunks_base64" in answer:
            out.append(b"".join(base64.b64decode(c) for c in answer["chunks_base64"]))
    return out


RECORDINGS = {
    "openai": ["openai_chat_stream_toolcall.sse", "openai_chat_stream_parallel_toolcalls.sse",
               "groq_stream_midstream_error_event.sse",
               "openrouter_stream_comments_then_error.sse"],
    "anthropic": ["anthropic_stream_thinking_padded.sse"],
    "gemini": ["gemini_stream_functioncall_crlf.sse", "gemini_stream_thoughts_crlf.sse"],
    "deepseek": ["deepseek_stream_reasoning_content.sse"],
    "ollama": [],
}


def stream_seeds(provider: str) -> list[bytes]:
    seeds = _fixture_bodies(provider)
    for name in RECORDINGS[provider]:
        seeds.append((ROOT / "conformance" / "recordings" / name).read_bytes())
    assert seeds, f"no stream seeds for {provider}"
    return seeds


SEEDS = {p: stream_seeds(p) for p in PROVIDERS}
BODIES = {path.name: json.loads(path.read_text())
          for path in sorted((ROOT / "tests" / "data" / "responses").glob("*.json"))}
assert BODIES


# ---------------------------------------------------------------- strategies

KEYS = ["choices", "message", "delta", "content", "role", "tool_calls", "function", "name",
        "arguments", "id", "index", "type", "finish_reason", "usage", "prompt_tokens",
        "completion_tokens", "total_tokens", "error", "code", "status", "candidates", "parts",
        "text", "functionCall", "args", "finishReason", "usageMetadata", "thought",
        "content_block", "partial_json", "stop_reason", "input", "done", "done_reason",
        "reasoning_content", "thinking", "input_tokens", "output_tokens", "tool_use",
        "prompt_eval_count", "eval_count", "promptTokenCount", "candidatesTokenCount"]

json_scalars = (st.none() | st.booleans()
                | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=12) | st.sampled_from([*KEYS, "stop", "tool_use", "STOP"]))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5),
    max_leaves=25)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _replace(value: Any, path: tuple[Any, ...], op: str, new: Any) -> Any:
    if not path:
        return new if op != "drop" else None
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if not rest and op == "drop":
            copy.pop(head, None)
        else:
            copy[head] = _replace(copy[head], rest, op, new)
        return copy
    copy_list = list(value)
    if not rest and op == "drop":
        del copy_list[head]
    else:
        copy_list[head] = _replace(copy_list[head], rest, op, new)
    return copy_list


@st.composite
def mutated_json(draw: st.DrawFn, base: Any) -> Any:
    """*base* with a few keys dropped, values nulled or replaced by wrong types."""
    value = base
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "null", "retype", "wrap", "stringify"]))
        if op == "drop" and not path:
            op = "null"
        if op == "null":
            new: Any = None
        elif op == "retype":
            new = draw(json_values)
        elif op == "wrap":
            new = [_get(value, path)]
        elif op == "stringify":
            new = json.dumps(_get(value, path), allow_nan=True)
        else:
            new = None
        value = _replace(value, path, "drop" if op == "drop" else "set", new)
    return value


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """Byte-level damage: flips, deletions, insertions, duplications, truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate", "crlf"]))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=24) | st.sampled_from(
                [b"\n", b"\r", b"\r\n\r\n", b"data: ", b"event: error\n", b"\xff", b"{", b"]",
                 b'data: {"error": {"message": "x"}}\n\n', b"\x00", b"\xe2\x82"]))
        elif op == "dup":
            end = min(len(data), pos + draw(st.integers(1, 200)))
            data[pos:pos] = data[pos:end]
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = b"\r"
    return bytes(data)


def _json_lines(seed: bytes) -> list[tuple[bytes, Any]]:
    """Split a text stream into lines, with the JSON each line carries (or None)."""
    out = []
    for line in seed.split(b"\n"):
        text = line.strip()
        payload = text[5:].strip() if text.startswith(b"data:") else text
        try:
            value = json.loads(payload) if payload.startswith((b"{", b"[")) else None
        except ValueError:
            value = None
        out.append((line, value))
    return out


@st.composite
def mutated_stream(draw: st.DrawFn, provider: str) -> bytes:
    """A real stream whose JSON payloads were mutated, then maybe byte-damaged."""
    seed = draw(st.sampled_from(SEEDS[provider]))
    lines = []
    for line, value in _json_lines(seed):
        if value is not None and draw(st.integers(0, 3)) == 0:
            value = draw(mutated_json(value))
            prefix = b"data: " if line.lstrip().startswith(b"data:") else b""
            end = b"\r" if line.endswith(b"\r") else b""
            line = prefix + json.dumps(value, allow_nan=True).encode() + end
        lines.append(line)
    body = b"\n".join(lines)
    if draw(st.booleans()):
        body = draw(mutated_bytes(body))
    return body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


# ---------------------------------------------------------------- StreamDecoder

def decode(provider: str, pieces: list[bytes]) -> StreamDecoder:
    """Feed *pieces*; every call must return a list of events and never raise."""
    m = manifest(provider)
    decoder = StreamDecoder(m, MODELS[provider], max_frame_bytes=64 * 1024)
    started = time.perf_counter()
    for piece in pieces:
        events = decoder.feed(piece)
        assert isinstance(events, list) and all(isinstance(e, StreamEvent) for e in events)
        for event in events:
            assert event.type in {"content_delta", "thinking_delta", "tool_call_started",
                                  "tool_call_delta", "tool_call_ended", "usage", "finished"}
        if decoder.error is not None:
            assert isinstance(decoder.error, EngineError), repr(decoder.error)
            assert decoder.feed(b"more") == []
    events = decoder.close()
    assert isinstance(events, list) and all(isinstance(e, StreamEvent) for e in events)
    assert decoder.error is None or isinstance(decoder.error, EngineError)
    assert decoder.done or decoder.error is not None, "close() must end or fail the stream"
    if decoder.error is not None and decoder.error.kind == "incomplete_stream":
        assert decoder.error.partial is not None
    try:
        response = decoder.response
        assert isinstance(response, ChatResponse)
    except EngineError:
        pass
    assert time.perf_counter() - started < SLOW
    return decoder


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_stream_decoder_random_bytes(provider, data, cuts):
    decode(provider, split(data, cuts))


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data(), cuts=st.lists(st.integers(0, 100_000), max_size=16))
def test_stream_decoder_mutated_real_streams(provider, data, cuts):
    body = data.draw(mutated_stream(provider))
    decode(provider, split(body, cuts))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_decoder_seeds_decode_cleanly_at_every_split(provider):
    """Control: the unmutated seeds never hit an unexpected exception at any 1-byte split."""
    for seed in SEEDS[provider]:
        for cut in range(0, len(seed), max(1, len(seed) // 97)):
            decode(provider, [seed[:cut], seed[cut:]])


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ_SMALL
@given(values=st.lists(json_values, min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_decoder_arbitrary_json_frames(provider, values, cuts):
    """Well-framed streams of arbitrary JSON (NaN/Infinity included, as json.loads allows)."""
    framing = manifest(provider).chat.stream.framing  # type: ignore[union-attr]
    texts = [json.dumps(v, allow_nan=True) for v in values]
    if framing == "ndjson":
        body = "".join(t + "\n" for t in texts)
    else:
        body = "".join(f"data: {t}\n\n" for t in texts)
    decode(provider, split(body.encode(), cuts))


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "ollama"])
def test_stream_usage_with_non_finite_numbers(provider):
    """``json.loads`` turns ``Infinity``/``NaN`` into floats; usage must not crash on them."""
    frames = {
        "openai": 'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}],'
                  '"usage":{"prompt_tokens":Infinity,"completion_tokens":NaN}}\n\ndata: [DONE]\n\n',
        "anthropic": 'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
                     '"end_turn"},"usage":{"output_tokens":Infinity}}\n\nevent: message_stop\n'
                     'data: {"type":"message_stop"}\n\n',
        "gemini": 'data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}'
                  '],"usageMetadata":{"promptTokenCount":Infinity}}\r\n\r\n',
        "ollama": '{"message":{"role":"assistant","content":"a"},"done":true,"done_reason":"stop",'
                  '"prompt_eval_count":Infinity,"eval_count":NaN}\n',
    }
    decode(provider, [frames[provider].encode()])


# ---------------------------------------------------------------- map_response

def mapped(provider: str, data: Any) -> None:
    started = time.perf_counter()
    try:
        response = map_response(manifest(provider), data, MODELS[provider])
    except EngineError:
        pass
    else:
        assert isinstance(response, ChatResponse)
        assert response.finish_reason in {"stop", "length", "tool_calls", "content_filter",
                                          "other"}
        assert isinstance(response.content, str)
        assert all(isinstance(c.arguments, dict) for c in response.tool_calls)
        assert isinstance(response.usage.total_tokens, int)
    assert time.perf_counter() - started < SLOW


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=json_values)
@example(data={"choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": float("inf")}})
@example(data={"choices": [{"message": {"content": "a"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": float("nan")}})
def test_map_response_any_json(provider, data):
    mapped(provider, data)


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_map_response_mutated_real_bodies(provider, data):
    name = data.draw(st.sampled_from(sorted(BODIES)))
    body = data.draw(mutated_json(BODIES[name]))
    mapped(provider, body)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_map_response_real_bodies_with_every_manifest(name):
    """Control: every real body, given to every manifest, maps or is an EngineError."""
    for provider in PROVIDERS:
        mapped(provider, BODIES[name])


# ---------------------------------------------------------------- classify

header_names = st.sampled_from(["retry-after", "retry-after-ms", "x-should-retry",
                                "content-type", "x-ratelimit-reset"]) | st.text(max_size=8)
header_values = (st.text(max_size=40) | st.sampled_from(
    ["1e999", "-1", "nan", "inf", "0.5", "Mon, 1 Jan 2024 00:00:00 +9999999999",
     "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 1 Jan 0001 00:00:00 -2400", "true", "false",
     "34.4s", "6m0s", "1h2m3s4ms", "99999999999999999999999h"]))
bodies = (st.binary(max_size=600)
          | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
          | st.sampled_from(sorted(BODIES)).map(lambda n: json.dumps(BODIES[n]).encode()))


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(status=st.none() | st.integers(-1000, 100_000),
       headers=st.dictionaries(header_names.map(str.lower), header_values, max_size=4),
       body=st.none() | bodies)
@example(status=429, headers={"retry-after": "Mon, 1 Jan 2024 00:00:00 +9999999999"}, body=b"")
@example(status=429, headers={"retry-after-ms": "1e400"}, body=b"{}")
def test_classify_never_raises(provider, status, headers, body):
    started = time.perf_counter()
    error = classify(manifest(provider), status, headers, body)
    assert isinstance(error, EngineError)
    assert error.retry_after is None or error.retry_after >= 0
    assert time.perf_counter() - started < SLOW


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ_SMALL
@given(status=st.none() | st.integers(100, 599), data=json_values)
def test_classify_decoded_data_never_raises(provider, status, data):
    error = classify(manifest(provider), status, {}, None, data=data)
    assert isinstance(error, EngineError)


# ---------------------------------------------------------------- the public clients

class FakeClock(Clock):
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds


content_types = st.sampled_from(["application/json", "text/event-stream",
                                 "application/x-ndjson", "text/html", "", "application/json; "
                                 "charset=utf-16"])
encodings = st.sampled_from(["", "", "gzip", "br", "deflate", "identity", "zstd", "bogus"])


@st.composite
def answers(draw: st.DrawFn, provider: str, stream: bool) -> tuple[int, dict[str, str], bytes]:
    status = draw(st.integers(100, 599) | st.sampled_from([200, 200, 200, 400, 429, 500]))
    headers = {"content-type": draw(content_types)}
    encoding = draw(encodings)
    if encoding:
        headers["content-encoding"] = encoding
    if draw(st.booleans()):
        headers["retry-after"] = draw(header_values)
    kind = draw(st.sampled_from(["bytes", "json", "seed"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=1500))
    elif kind == "json":
        body = json.dumps(draw(json_values), allow_nan=True).encode()
    elif stream:
        body = draw(mutated_stream(provider))
    else:
        name = draw(st.sampled_from(sorted(BODIES)))
        body = json.dumps(draw(mutated_json(BODIES[name])), allow_nan=True).encode()
    headers = {k: v for k, v in headers.items() if v}
    return status, headers, body


def _mock(answer: tuple[int, dict[str, str], bytes]) -> httpx.MockTransport:
    status, headers, body = answer

    # Raw header bytes, as a server may send them (httpx decodes them leniently).
    raw = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in headers.items()]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=raw, content=body)

    return httpx.MockTransport(handler)


async def _call_async(provider: str, answer: tuple[int, dict[str, str], bytes],
                      stream: bool) -> None:
    async with httpx.AsyncClient(transport=_mock(answer)) as http:
        client = await AiClient.create(f"{provider}/{MODELS[provider]}", api_key="sk-fuzz",
                                       http_client=http, max_retries=1, clock=FakeClock())
        try:
            if stream:
                handle = client.chat().user("hi").stream()
                async with handle:
                    async for event in handle:
                        assert isinstance(event, StreamEvent)
                assert isinstance(handle.response, ChatResponse)
            else:
                assert isinstance(await client.chat().user("hi").execute(), ChatResponse)
        except EngineError:
            pass


def _call_sync(provider: str, answer: tuple[int, dict[str, str], bytes], stream: bool) -> None:
    with httpx.Client(transport=_mock(answer)) as http:
        client = SyncAiClient.create(f"{provider}/{MODELS[provider]}", api_key="sk-fuzz",
                                     http_client=http, max_retries=1, clock=FakeClock())
        try:
            if stream:
                with client.chat().user("hi").stream() as handle:
                    for event in handle:
                        assert isinstance(event, StreamEvent)
                assert isinstance(handle.response, ChatResponse)
            else:
                assert isinstance(client.chat().user("hi").execute(), ChatResponse)
        except EngineError:
            pass


@pytest.mark.parametrize("call", ["plain", "stream"])
@pytest.mark.parametrize("mode", ["async", "sync"])
@FUZZ
@given(data=st.data())
def test_public_client_returns_or_raises_engine_error(mode, call, data):
    provider = data.draw(st.sampled_from(PROVIDERS))
    answer = data.draw(answers(provider, call == "stream"))
    started = time.perf_counter()
    if mode == "async":
        asyncio.run(_call_async(provider, answer, call == "stream"))
    else:
        _call_sync(provider, answer, call == "stream")
    assert time.perf_counter() - started < SLOW


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_public_client_infinite_usage_in_a_2xx_body(mode):
    """A 200 body with ``"prompt_tokens": Infinity`` (valid for json.loads) is an EngineError
    or a response, never OverflowError."""
    body = (b'{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
            b'"finish_reason":"stop"}],"usage":{"prompt_tokens":Infinity,"completion_tokens":1}}')
    answer = (200, {"content-type": "application/json"}, body)
    if mode == "async":
        asyncio.run(_call_async("openai", answer, False))
    else:
        _call_sync("openai", answer, False)


# ---------------------------------------------------------------- atheris (optional)

ATHERIS_HARNESS = textwrap.dedent(r"""
    import json, sys
    import atheris

    with atheris.instrument_imports(include=["engine"]):
        from engine.protocol.classify import classify
        from engine.errors import EngineError
        from engine.manifest import load_manifest
        from engine.protocol.accumulate import map_whole as map_response
        from engine.protocol.decode import END, NEED_DATA, StreamDecoder

    PROVIDERS = ["openai", "anthropic", "gemini", "deepseek", "ollama"]
    MANIFESTS = [load_manifest(p) for p in PROVIDERS]

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        m = MANIFESTS[data[0] % len(MANIFESTS)]
        what, rest = data[1] % 3, data[2:]
        if what == 0:
            decoder = StreamDecoder(m, "model", max_frame_bytes=65536)
            cut = len(rest) // 2
            try:
                for piece in (rest[:cut], rest[cut:], b""):
                    if piece or not rest[cut:] or piece is b"":
                        decoder.receive_data(piece)
                    while decoder.next_event() not in (NEED_DATA, END):
                        pass
            except EngineError:
                pass
        elif what == 1:
            try:
                value = json.loads(rest.decode("utf-8", "replace"))
            except (ValueError, RecursionError):
                return
            try:
                map_response(m, value, "model")
            except EngineError:
                pass
        else:
            assert isinstance(classify(m, 400, {"retry-after": rest[:40].decode("latin-1")},
                                       rest), EngineError)

    atheris.Setup([sys.argv[0], "-max_total_time=%s" % sys.argv[1], "-max_len=4096",
                   "-len_control=0", "-rss_limit_mb=1024", "-timeout=5", sys.argv[2]], one)
    atheris.Fuzz()
""")


def test_atheris_short_run(tmp_path):
    """Coverage-guided fuzzing of the decoder, mapper and classifier (a short run)."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.skip("atheris is not installed (optional: pip install atheris)")
    script = tmp_path / "fuzz_engine.py"
    script.write_text(ATHERIS_HARNESS)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, provider in enumerate(PROVIDERS):  # seeds: real streams and bodies
        for n, seed in enumerate(SEEDS[provider]):
            (corpus / f"s{index}-{n}").write_bytes(bytes([index, 0]) + seed[:4000])
        for n, body in enumerate(BODIES.values()):
            (corpus / f"b{index}-{n}").write_bytes(bytes([index, 1]) + json.dumps(body).encode())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AI_PROTOCOL_PATH", None)
    proc = subprocess.run([sys.executable, str(script), "3", str(corpus)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
