"""Streaming through the public API, over a real loopback HTTP server.

Recorded provider bodies (``conformance/recordings``, byte-exact; see the README
there) are replayed by :class:`conformance.server.ReplayServer`, which writes
every scripted chunk as its own HTTP chunk, first at the recording's SSE event
boundaries and then at hypothesis-chosen byte boundaries (1-byte runs, splits
inside multi-byte UTF-8 characters and between ``\\r`` and ``\\n``).

Every expectation (text, thinking, tool calls, usage, finish reason, errors) is
derived from the recorded bytes by the small *reference parsers* in this file,
written from ``shared/reference/WIREFORMATS.md`` (sections 0, 1, 3, 4, 7, 10,
19, 20) and independent of the engine; a few facts are additionally pinned by
hand from the recordings to keep the reference parsers honest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from decoding import Fed as StreamDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import AiClient, EngineError, SyncAiClient
from engine.client import Clock
from engine.conformance.server import ReplayServer, ScriptedResponse
from engine.events import StreamEvent
from engine.manifest import load_manifest

RECORDINGS = Path(__file__).parent.parent / "conformance" / "recordings"
NDJSON = "application/x-ndjson"
SPLIT_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# =============================================================== reference parsers
#
# Deliberately simple whole-body parsers: they see the complete body at once, so
# they have no chunk-boundary logic at all. They encode the wire formats, not the
# engine's manifests.

_LINE_END = re.compile(r"\r\n|\r|\n")
_TERMINATOR = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def ref_sse(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of every SSE event (WIREFORMATS section 0)."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in _LINE_END.split(body.decode("utf-8")):
        if not line:
            if data or name is not None:
                events.append((name, "\n".join(data)))
            name, data = None, []
            continue
        if line.startswith(":"):
            continue  # comment (": OPENROUTER PROCESSING", ": keep-alive")
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "data":
            data.append(value)
        elif key == "event":
            name = value
    if data or name is not None:
        events.append((name, "\n".join(data)))
    return events


def event_boundaries(body: bytes) -> list[int]:
    """Offsets just after each SSE event terminator (LF, CRLF or CR blank line)."""
    return [m.end() for m in _TERMINATOR.finditer(body)]


def split(body: bytes, points: Sequence[int]) -> list[bytes]:
    cuts = [0, *sorted({p for p in points if 0 < p < len(body)}), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def tricky_point_groups(body: bytes) -> list[list[int]]:
    """Split points a naive decoder gets wrong, by kind: inside UTF-8 characters,
    between CR and LF, and right before / at / after every event terminator."""
    utf8 = [i for i, byte in enumerate(body) if 0x80 <= byte <= 0xBF]  # continuation bytes
    crlf = [m.start() + 1 for m in re.finditer(rb"\r\n", body)]
    around: set[int] = set()
    for end in event_boundaries(body):
        around.update((end - 2, end - 1, end, end + 1))
    groups = [utf8, crlf, sorted(around)]
    return [[p for p in g if 0 < p < len(body)] for g in groups if g]


def tricky_points(body: bytes) -> list[int]:
    return sorted({p for group in tricky_point_groups(body) for p in group})


def dig(obj: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or len(obj) <= key:
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
    return obj


@dataclass
class ExpCall:
    id: str | None  # None: the provider sends no id (the engine must synthesize one)
    name: str
    fragments: list[str] | None  # argument text as streamed; None: sent whole as an object
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class Expected:
    content: list[str] = field(default_factory=list)  # non-empty text deltas, in order
    thinking: list[str] = field(default_factory=list)
    calls: list[ExpCall] = field(default_factory=list)
    finish: str | None = None  # normalized finish reason
    usage: dict[str, int | None] | None = None
    error: str | None = None  # the provider's error message, for in-stream errors


def usage_dict(prompt: int, completion: int, total: int | None = None,
               cached: int | None = None, reasoning: int | None = None,
               cache_write: int | None = None) -> dict[str, int | None]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
        "cache_write_tokens": cache_write,
    }


# WIREFORMATS section 19, finish reasons (raw -> normalized).
OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                 "function_call": "tool_calls", "content_filter": "content_filter"}
ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                    "tool_use": "tool_calls", "refusal": "content_filter"}
GEMINI_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}
OLLAMA_FINISH = {"stop": "stop", "length": "length"}


def ref_openai(body: bytes, reasoning_field: str | None = None) -> Expected:
    """OpenAI chat-completions stream (section 1; DeepSeek's reasoning_content, section 10).

    Text is ``choices[0].delta.content``; tool-call fragments are keyed by ``index``;
    a chunk with a top-level ``error`` ends the stream with that error; usage comes
    from whichever chunk carries a non-null ``usage`` (``choices: []`` or not).
    """
    exp = Expected()
    calls: dict[int, ExpCall] = {}
    raw_finish = None
    usage: dict[str, int | None] | None = None
    for _name, data in ref_sse(body):
        if data == "[DONE]":
            break
        obj = json.loads(data)
        if obj.get("error"):
            exp.error = obj["error"]["message"]
            break
        choice = dig(obj, "choices", 0)
        if choice:
            delta = choice.get("delta") or {}
            if reasoning_field and delta.get(reasoning_field):
                exp.thinking.append(delta[reasoning_field])
            if delta.get("content"):
                exp.content.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                fn = tc.get("function") or {}
                call = calls.get(tc["index"])
                if call is None:
                    call = calls[tc["index"]] = ExpCall(tc.get("id"), fn.get("name"), [])
                if fn.get("arguments"):
                    assert call.fragments is not None
                    call.fragments.append(fn["arguments"])
            if choice.get("finish_reason"):
                raw_finish = choice["finish_reason"]
        if obj.get("usage"):
            u = obj["usage"]
            cached = u.get("prompt_cache_hit_tokens",
                           dig(u, "prompt_tokens_details", "cached_tokens"))
            usage = usage_dict(u["prompt_tokens"], u["completion_tokens"], u.get("total_tokens"),
                               cached, dig(u, "completion_tokens_details", "reasoning_tokens"))
    for call in calls.values():
        call.arguments = json.loads("".join(call.fragments or []) or "{}")
    exp.calls = list(calls.values())
    if exp.error is None:
        exp.finish = OPENAI_FINISH[raw_finish] if raw_finish else None
        exp.usage = usage
    return exp


def ref_deepseek(body: bytes) -> Expected:
    return ref_openai(body, reasoning_field="reasoning_content")


def ref_anthropic(body: bytes) -> Expected:
    """Anthropic Messages stream (section 3): content blocks by index, cumulative usage."""
    exp = Expected()
    blocks: dict[int, ExpCall] = {}
    counts: dict[str, int] = {}
    raw_finish = None
    for name, data in ref_sse(body):
        if name == "ping":
            continue
        obj = json.loads(data)
        kind = obj["type"]
        if kind == "error":
            exp.error = obj["error"]["message"]
            break
        if kind == "message_start":
            counts.update({k: v for k, v in obj["message"]["usage"].items()
                           if isinstance(v, int)})
        elif kind == "content_block_start" and obj["content_block"]["type"] == "tool_use":
            block = obj["content_block"]
            blocks[obj["index"]] = ExpCall(block["id"], block["name"], [])
        elif kind == "content_block_delta":
            delta = obj["delta"]
            if delta["type"] == "text_delta" and delta["text"]:
                exp.content.append(delta["text"])
            elif delta["type"] == "thinking_delta" and delta["thinking"]:
                exp.thinking.append(delta["thinking"])
            elif delta["type"] == "input_json_delta" and delta["partial_json"]:
                fragments = blocks[obj["index"]].fragments
                assert fragments is not None
                fragments.append(delta["partial_json"])
        elif kind == "message_delta":
            raw_finish = obj["delta"].get("stop_reason") or raw_finish
            counts.update({k: v for k, v in obj["usage"].items() if isinstance(v, int)})
    for call in blocks.values():
        call.arguments = json.loads("".join(call.fragments or []) or "{}")
    exp.calls = list(blocks.values())
    if exp.error is None:
        exp.finish = ANTHROPIC_FINISH[raw_finish] if raw_finish else None
        # input_tokens excludes cache reads/writes; the normalized prompt count includes them.
        prompt = (counts["input_tokens"] + counts.get("cache_read_input_tokens", 0)
                  + counts.get("cache_creation_input_tokens", 0))
        exp.usage = usage_dict(prompt, counts["output_tokens"],
                               cached=counts.get("cache_read_input_tokens"),
                               cache_write=counts.get("cache_creation_input_tokens"))
    return exp


def ref_gemini(body: bytes) -> Expected:
    """Gemini ``streamGenerateContent?alt=sse`` (section 4): every event is a whole
    response; text parts are increments, function calls arrive whole (no id), usage
    is cumulative (last wins) and STOP with function calls means tool calls."""
    exp = Expected()
    raw_finish = None
    meta: dict[str, Any] | None = None
    for _name, data in ref_sse(body):
        obj = json.loads(data)
        if obj.get("error"):
            exp.error = obj["error"]["message"]
            break
        cand = dig(obj, "candidates", 0) or {}
        parts = dig(cand, "content", "parts") or []
        text = "".join(p["text"] for p in parts if p.get("text") and not p.get("thought"))
        thought = "".join(p["text"] for p in parts if p.get("text") and p.get("thought"))
        if thought:
            exp.thinking.append(thought)
        if text:
            exp.content.append(text)
        for p in parts:
            if "functionCall" in p:
                fc = p["functionCall"]
                exp.calls.append(ExpCall(fc.get("id"), fc["name"], None, dict(fc["args"])))
        raw_finish = cand.get("finishReason") or raw_finish
        meta = obj.get("usageMetadata") or meta
    if exp.error is None:
        finish = GEMINI_FINISH[raw_finish] if raw_finish else None
        exp.finish = "tool_calls" if exp.calls and finish == "stop" else finish
        assert meta is not None
        thoughts = meta.get("thoughtsTokenCount")
        # candidatesTokenCount excludes thoughts; the normalized completion count includes them.
        exp.usage = usage_dict(meta["promptTokenCount"],
                               meta.get("candidatesTokenCount", 0) + (thoughts or 0),
                               meta["totalTokenCount"], meta.get("cachedContentTokenCount"),
                               thoughts)
    return exp


def ref_ollama(body: bytes) -> Expected:
    """Ollama ``/api/chat`` NDJSON (section 7): one object per line, complete tool calls
    in ``done:false`` objects, usage and ``done_reason`` on the ``done:true`` object."""
    exp = Expected()
    for line in body.decode("utf-8").split("\n"):
        if not line.strip():
            continue
        obj = json.loads(line)
        if "error" in obj:
            exp.error = obj["error"]
            break
        message = obj.get("message") or {}
        if message.get("thinking"):
            exp.thinking.append(message["thinking"])
        if message.get("content"):
            exp.content.append(message["content"])
        for tc in message.get("tool_calls") or []:
            fn = tc["function"]
            exp.calls.append(ExpCall(tc.get("id"), fn["name"], None, dict(fn["arguments"])))
        if obj.get("done"):
            finish = OLLAMA_FINISH[obj["done_reason"]]
            # Ollama has no tool-call finish reason: a tool call still ends with "stop".
            exp.finish = "tool_calls" if exp.calls and finish == "stop" else finish
            exp.usage = usage_dict(obj["prompt_eval_count"], obj["eval_count"])
            break
    return exp


# =============================================================== constructed bodies


def sse_event(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def anthropic_message_start(input_tokens: int = 120, cache_read: int = 100) -> bytes:
    return sse_event({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": cache_read, "output_tokens": 1}}},
        "message_start")


def anthropic_text_block(index: int, pieces: Sequence[str]) -> list[bytes]:
    out = [sse_event({"type": "content_block_start", "index": index,
                      "content_block": {"type": "text", "text": ""}}, "content_block_start")]
    out += [sse_event({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": p}}, "content_block_delta")
            for p in pieces]
    return out


def anthropic_stop(index: int) -> bytes:
    return sse_event({"type": "content_block_stop", "index": index}, "content_block_stop")


# Constructed (not recorded) Anthropic tool-use stream in the documented wire shape
# (WIREFORMATS section 3: tool_use block start with empty input, input_json_delta
# starting with "", a ping between deltas), with multi-byte UTF-8 in text and args.
ANTHROPIC_TOOL_BODY = b"".join([
    anthropic_message_start(),
    *anthropic_text_block(0, ["Café ☕ in 東京 ", "— checking 🌦️"]),
    anthropic_stop(0),
    sse_event({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01KFbKqPYSuAKujiL6mTfzYA", "name": "get_weather",
        "input": {}}}, "content_block_start"),
    sse_event({"type": "content_block_delta", "index": 1,
               "delta": {"type": "input_json_delta", "partial_json": ""}},
              "content_block_delta"),
    sse_event({"type": "ping"}, "ping"),
    sse_event({"type": "content_block_delta", "index": 1,
               "delta": {"type": "input_json_delta", "partial_json": '{"city": "東'}},
              "content_block_delta"),
    sse_event({"type": "content_block_delta", "index": 1,
               "delta": {"type": "input_json_delta", "partial_json": '京", "unit": "c"}'}},
              "content_block_delta"),
    anthropic_stop(1),
    sse_event({"type": "message_delta", "delta": {"stop_reason": "tool_use",
               "stop_sequence": None}, "usage": {"output_tokens": 57}}, "message_delta"),
    sse_event({"type": "message_stop"}, "message_stop"),
])


def ollama_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def ollama_chunk(content: str = "", **extra: Any) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message.update(extra.pop("message_extra", {}))
    return ollama_line({"model": "llama3.2", "created_at": "2025-07-07T20:32:53.844124Z",
                        "message": message, "done": False, **extra})


# Constructed NDJSON body in the real Ollama /api/chat streaming format
# (WIREFORMATS section 7, from ollama docs/api.md and api/types.go): content
# increments in done:false objects, a done:false object holding the complete
# tool_calls array (arguments is an object, no id), and a final done:true object
# with done_reason and prompt_eval_count / eval_count.
OLLAMA_TOOL_BODY = b"".join([
    ollama_chunk("Let me look"),
    ollama_chunk(" that up — 東京 🗼"),
    ollama_chunk("", message_extra={"tool_calls": [
        {"function": {"index": 0, "name": "get_weather",
                      "arguments": {"city": "Tokyo", "days": 3}}}]}),
    ollama_line({"model": "llama3.2", "created_at": "2025-07-07T20:32:54.1Z",
                 "message": {"role": "assistant", "content": ""}, "done_reason": "stop",
                 "done": True, "total_duration": 3244883583, "load_duration": 2969184542,
                 "prompt_eval_count": 169, "prompt_eval_duration": 141656333,
                 "eval_count": 18, "eval_duration": 133293625}),
])


# =============================================================== the recordings


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    prefix: str  # path under the server URL used as base_url
    reference: Callable[[bytes], Expected]
    body: bytes
    error_kind: str | None = None
    content_type: str = "text/event-stream"
    pins: dict[str, Any] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]

    def expected(self) -> Expected:
        return self.reference(self.body)

    def boundary_chunks(self) -> list[bytes]:
        if self.content_type == NDJSON:
            ends = [m.end() for m in re.finditer(rb"\n", self.body)]
        else:
            ends = event_boundaries(self.body)
        return split(self.body, ends)


def rec(file: str, model: str, prefix: str, reference: Callable[[bytes], Expected],
        **kwargs: Any) -> Case:
    return Case(file, model, prefix, reference, (RECORDINGS / file).read_bytes(), **kwargs)


RECORDED = [
    rec("openai_chat_stream_toolcall.sse", "openai/gpt-4o-mini", "/v1", ref_openai, pins={
        "calls": [("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", {"country": "UK"})],
        "usage": usage_dict(53, 15, 68, 0, 0), "finish": "tool_calls", "content": ""}),
    rec("openai_chat_stream_parallel_toolcalls.sse", "openai/gpt-4o", "/v1", ref_openai, pins={
        "calls": [("call_3rqTYrA6H21AYUaRGP4F66oq", "get_country", {}),
                  ("call_Xw9XMKBJU48kAAd78WgIswDx", "get_product_name", {})],
        "usage": usage_dict(364, 40, 404, 0, 0), "finish": "tool_calls"}),
    rec("anthropic_stream_thinking_padded.sse", "anthropic/claude-sonnet-4-20250514", "",
        ref_anthropic, pins={
            "content_prefix": "Here are the basic steps for safely crossing the street:",
            "content_suffix": " when crossing streets.",
            "thinking_prefix": "This is a straightforward question about pedestrian safety.",
            "usage": usage_dict(43, 282, 325, 0, None, 0), "finish": "stop", "calls": []}),
    rec("gemini_stream_functioncall_crlf.sse", "gemini/gemini-2.0-flash", "/v1beta",
        ref_gemini, pins={
            "calls": [(None, "get_capital", {"country": "France"})],
            "usage": usage_dict(52, 5, 57), "finish": "tool_calls", "content": ""}),
    rec("gemini_stream_thoughts_crlf.sse", "gemini/gemini-2.5-pro", "/v1beta", ref_gemini, pins={
        "thinking_prefix": "**Clarifying User Goals**",
        "content_suffix": "Always assume a driver might not see you.",
        "usage": usage_dict(34, 469 + 787, 1290, None, 787), "finish": "stop", "calls": []}),
    rec("deepseek_stream_reasoning_content.sse", "deepseek/deepseek-reasoner", "",
        ref_deepseek, pins={
            "content": "Hello there! 😊 How can I help you today?",
            "thinking_prefix": 'Hmm, the user just said "Hello".',
            "usage": usage_dict(6, 212, 218, 0, 198), "finish": "stop", "calls": []}),
    # Groq's OpenAI-compatible stream ends with `event: error` + {"error": {...,
    # "type": "invalid_request_error", "code": "tool_use_failed", "status_code": 400}}.
    # The openai manifest reads choices[0].delta.content only (not delta.reasoning), and
    # every content here is "", so no event precedes the error. A 400 tool-validation
    # failure is an invalid request, not a server error.
    rec("groq_stream_midstream_error_event.sse", "openai/gpt-4o", "/v1", ref_openai,
        error_kind="invalid_request", pins={"content": "", "error_prefix":
                                            "Tool call validation failed"}),
    # OpenRouter: 17 comment keep-alives, reasoning-only deltas (not read by the openai
    # manifest), then a chunk with a top-level {"error": {"code": 400, ...}}: an
    # upstream 400, i.e. an invalid request.
    rec("openrouter_stream_comments_then_error.sse", "openai/gpt-4o", "/v1", ref_openai,
        error_kind="invalid_request", pins={"content": "", "error": "Token limit reached"}),
    rec("azure_openai_v1_chat_stream_prompt_filter_first.sse", "openai/gpt-4o", "/v1",
        ref_openai, pins={
            "calls": [("call_tWA8BJziGlCyhQEXhEHn6eXK", "weather",
                       {"location": "Florence, Italy"})],
            "usage": usage_dict(145, 154, 299, 0, 128), "finish": "tool_calls"}),
    # xAI: completion_tokens excludes reasoning (total = prompt + completion + reasoning);
    # the openai manifest maps the OpenAI fields as sent.
    rec("xai_chat_stream_toolcall.sse", "openai/gpt-4o", "/v1", ref_openai, pins={
        "calls": [("call_51851897", "weather", {"location": "Florence, Italy"})],
        "usage": usage_dict(361, 26, 622, 360, 235), "finish": "tool_calls"}),
]

CONSTRUCTED = [
    Case("anthropic_tool_use_utf8 (constructed)", "anthropic/claude-sonnet-4-20250514", "",
         ref_anthropic, ANTHROPIC_TOOL_BODY, pins={
             "content": "Café ☕ in 東京 — checking 🌦️",
             "calls": [("toolu_01KFbKqPYSuAKujiL6mTfzYA", "get_weather",
                        {"city": "東京", "unit": "c"})],
             "usage": usage_dict(220, 57, 277, 100, None, 0), "finish": "tool_calls"}),
    Case("ollama_ndjson_tool_call (constructed)", "ollama/llama3.2", "", ref_ollama,
         OLLAMA_TOOL_BODY, content_type=NDJSON, pins={
             "content": "Let me look that up — 東京 🗼",
             "calls": [(None, "get_weather", {"city": "Tokyo", "days": 3})],
             "usage": usage_dict(169, 18, 187), "finish": "tool_calls"}),
]



def multiline_data(body: bytes) -> bytes:
    """The same CRLF stream with each event's JSON spread over two ``data:`` lines
    (legal SSE: the lines are joined with "\\n", which is JSON whitespace)."""
    return body.replace(b',"usageMetadata"', b'\r\ndata: ,"usageMetadata"')


# Constructed from gemini_stream_thoughts_crlf.sse: multi-line data events with CRLF
# line ends, so a CR/LF split that fakes a blank line would cut an event in two.
CONSTRUCTED.append(Case(
    "gemini_thoughts_multiline_data (constructed)", "gemini/gemini-2.5-pro", "/v1beta",
    ref_gemini, multiline_data(RECORDED[4].body), pins=RECORDED[4].pins))

ALL_CASES = RECORDED + CONSTRUCTED


def case_id(case: Case) -> str:
    return case.name.split(" ")[0].removesuffix(".sse")


# =============================================================== running streams


@dataclass
class Outcome:
    events: list[StreamEvent]
    response: Any = None
    stats: Any = None
    error: EngineError | None = None


class FakeClock(Clock):
    """Real monotonic time, but sleeps are recorded instead of slept."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)


async def new_client(case: Case | str, server: ReplayServer, prefix: str = "",
                     **kwargs: Any) -> AiClient:
    if isinstance(case, Case):
        model, prefix = case.model, case.prefix
    else:
        model = case
    kwargs.setdefault("max_retries", 0)
    return await AiClient.create(model, api_key="sk-test-streaming", base_url=server.url + prefix,
                                 timeout=10.0, **kwargs)


def new_sync_client(case: Case, server: ReplayServer, **kwargs: Any) -> SyncAiClient:
    kwargs.setdefault("max_retries", 0)
    return SyncAiClient.create(case.model, api_key="sk-test-streaming",
                               base_url=server.url + case.prefix, timeout=10.0, **kwargs)


def script(case: Case, chunks: list[bytes], delay: float = 0.0) -> ScriptedResponse:
    response = ScriptedResponse.sse(chunks, headers=[("Content-Type", case.content_type)])
    response.chunk_delay = delay
    return response


async def run_async(client: AiClient, user: str = "Tell me a story") -> Outcome:
    stream = client.chat().user(user).stream()
    events: list[StreamEvent] = []
    try:
        async for event in stream:
            events.append(event)
    except EngineError as exc:
        return Outcome(events, error=exc)
    return Outcome(events, stream.response, stream.stats)


def run_sync(client: SyncAiClient, user: str = "Tell me a story") -> Outcome:
    stream = client.chat().user(user).stream()
    events: list[StreamEvent] = []
    try:
        for event in stream:
            events.append(event)
    except EngineError as exc:
        return Outcome(events, error=exc)
    return Outcome(events, stream.response, stream.stats)


def run_sans_io(case: Case, chunks: list[bytes]) -> Outcome:
    """The same chunks fed straight into the decoder (exact boundaries, no TCP)."""
    model = case.model.split("/", 1)[1]
    decoder = StreamDecoder(load_manifest(case.provider), model)
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
        if decoder.error is not None or decoder.done:
            break
    if decoder.error is None:
        events += decoder.close()
    if decoder.error is not None:
        return Outcome(events, error=decoder.error)
    return Outcome(events, decoder.response)


def canon(out: Outcome, exp: Expected) -> list[tuple[Any, ...]]:
    """A comparable form of an event sequence; synthesized tool-call ids (which are
    random per run) become a placeholder."""
    known = {c.id for c in exp.calls if c.id}

    def cid(value: str) -> str:
        return value if value in known else ("<synthesized>" if value else "")

    result: list[tuple[Any, ...]] = []
    for event in out.events:
        p = event.payload
        if event.is_tool_call_started:
            result.append(("started", p.index, cid(p.id), p.name))
        elif event.is_tool_call_ended:
            tc = p.tool_call
            result.append(("ended", p.index, cid(tc.id), tc.name, tc.arguments))
        elif event.is_usage:
            result.append(("usage", dataclasses.asdict(p.usage)))
        else:
            result.append((event.type, *dataclasses.astuple(p)))
    if out.error is not None:
        result.append(("error", out.error.kind, out.error.message))
    return result


# =============================================================== checks


def check_expected(out: Outcome, exp: Expected, case: Case, *, kind: bool = True) -> None:
    """The events (and final response / error) carry exactly what the body said.

    ``kind=False`` leaves the error classification to the event-boundary test (one
    failure per misclassified recording); the split tests compare whole event
    sequences, error kind included, against that run instead."""
    events = out.events
    assert [e.as_content_delta.text for e in events if e.is_content_delta] == exp.content
    assert [e.as_thinking_delta.text for e in events if e.is_thinking_delta] == exp.thinking

    started = [e.as_tool_call_started for e in events if e.is_tool_call_started]
    ended = [e.as_tool_call_ended for e in events if e.is_tool_call_ended]
    assert [(s.index, s.name) for s in started] == [(i, c.name) for i, c in enumerate(exp.calls)]
    assert [(e.index, e.tool_call.name, e.tool_call.arguments) for e in ended] == [
        (i, c.name, c.arguments) for i, c in enumerate(exp.calls)]
    for i, call in enumerate(exp.calls):
        deltas = [e.as_tool_call_delta.arguments for e in events
                  if e.is_tool_call_delta and e.as_tool_call_delta.index == i]
        if call.fragments is not None:
            assert deltas == call.fragments
        else:
            assert json.loads("".join(deltas)) == call.arguments
        if call.id is not None:
            assert started[i].id == call.id
            assert ended[i].tool_call.id == call.id
        else:
            assert ended[i].tool_call.id, "a missing provider id must be synthesized"
    final_ids = [e.tool_call.id for e in ended]
    assert len(set(final_ids)) == len(final_ids)

    if exp.error is not None:
        assert out.error is not None, "the in-stream error was not raised"
        if kind:
            assert out.error.kind == case.error_kind, out.error
        assert out.error.message == exp.error
        assert not any(e.is_finished for e in events)
        return
    assert out.error is None, out.error
    assert [e.as_finished.finish_reason for e in events if e.is_finished] == [exp.finish]
    assert [dataclasses.asdict(e.as_usage.usage) for e in events if e.is_usage] == [exp.usage]


def check_pins(out: Outcome, case: Case) -> None:
    """Hand-pinned facts from the recording (guards the reference parsers too)."""
    pins = case.pins
    content = "".join(e.as_content_delta.text for e in out.events if e.is_content_delta)
    thinking = "".join(e.as_thinking_delta.text for e in out.events if e.is_thinking_delta)
    if "content" in pins:
        assert content == pins["content"]
    if "content_prefix" in pins:
        assert content.startswith(pins["content_prefix"])
    if "content_suffix" in pins:
        assert content.endswith(pins["content_suffix"])
    if "thinking_prefix" in pins:
        assert thinking.startswith(pins["thinking_prefix"])
    if "calls" in pins:
        calls = [e.as_tool_call_ended.tool_call for e in out.events if e.is_tool_call_ended]
        assert [(tc.id if cid else None, tc.name, tc.arguments)
                for tc, (cid, _, _) in zip(calls, pins["calls"], strict=False)] == pins["calls"]
        assert len(calls) == len(pins["calls"])
    if "usage" in pins:
        assert [dataclasses.asdict(e.as_usage.usage) for e in out.events if e.is_usage] == [
            pins["usage"]]
    if "finish" in pins:
        assert [e.as_finished.finish_reason for e in out.events if e.is_finished] == [
            pins["finish"]]
    if "error" in pins:
        assert out.error is not None and out.error.message == pins["error"]
    if "error_prefix" in pins:
        assert out.error is not None and out.error.message.startswith(pins["error_prefix"])


def check_sequence(events: list[StreamEvent]) -> None:
    """Ordering rules: a call starts before its deltas and ends after them, once each;
    usage comes before finished; finished is the single last event."""
    kinds = [e.type for e in events]
    finished = [i for i, k in enumerate(kinds) if k == "finished"]
    if finished:
        assert finished == [len(events) - 1], kinds
        usage = [i for i, k in enumerate(kinds) if k == "usage"]
        assert len(usage) <= 1
        assert all(i < finished[0] for i in usage)
    else:
        assert "usage" not in kinds  # no final usage for a stream that did not finish
    indices = {e.payload.index for e in events
               if e.is_tool_call_started or e.is_tool_call_delta or e.is_tool_call_ended}
    for index in indices:
        mine = [(i, e) for i, e in enumerate(events)
                if (e.is_tool_call_started or e.is_tool_call_delta or e.is_tool_call_ended)
                and e.payload.index == index]
        types = [e.type for _, e in mine]
        assert types.count("tool_call_started") == 1, types
        assert types[0] == "tool_call_started", types
        if "tool_call_ended" in types:
            assert types.count("tool_call_ended") == 1
            assert types[-1] == "tool_call_ended", types
            first, last = mine[0][1], mine[-1][1]
            assert first.as_tool_call_started.name == last.as_tool_call_ended.tool_call.name
    if finished:
        started = sum(e.is_tool_call_started for e in events)
        assert sum(e.is_tool_call_ended for e in events) == started, "a call was never ended"


def check_response(out: Outcome) -> None:
    """``stream.response`` / ``stream.stats`` agree with the events."""
    if out.error is not None:
        return
    events, resp, stats = out.events, out.response, out.stats
    content = "".join(e.as_content_delta.text for e in events if e.is_content_delta)
    thinking = "".join(e.as_thinking_delta.text for e in events if e.is_thinking_delta)
    assert resp.content == content
    assert resp.thinking == (thinking or None)
    assert resp.tool_calls == [e.as_tool_call_ended.tool_call for e in events
                               if e.is_tool_call_ended]
    assert resp.finish_reason == events[-1].as_finished.finish_reason
    usage = [e.as_usage.usage for e in events if e.is_usage]
    if usage:
        assert resp.usage == usage[0]
    if stats is None:
        return
    assert stats.attempts >= 1
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (
        resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens)
    # ttft: the first output of any kind (text, thinking, a tool-call fragment).
    produced = any(e.is_content_delta or e.is_thinking_delta or e.is_tool_call_started
                   or e.is_tool_call_delta for e in events)
    if produced:
        assert stats.ttft_ms is not None
        assert 0 <= stats.ttft_ms <= stats.latency_ms
    else:
        assert stats.ttft_ms is None
    assert stats.latency_ms >= 0


def check_all(out: Outcome, exp: Expected, case: Case, *, kind: bool = True) -> None:
    check_expected(out, exp, case, kind=kind)
    check_sequence(out.events)
    check_response(out)
    check_pins(out, case)


# =============================================================== fixtures


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        yield srv


# =============================================================== 1. recordings


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
async def test_replay_at_event_boundaries(case: Case, server: ReplayServer) -> None:
    chunks = case.boundary_chunks()
    assert b"".join(chunks) == case.body
    # one HTTP chunk per event (per line for NDJSON), each ending with its terminator
    ends = (b"\n",) if case.content_type == NDJSON else (b"\n\n", b"\r\n\r\n")
    assert all(chunk.endswith(ends) for chunk in chunks)
    if case.content_type != NDJSON:
        assert len(chunks) >= len(ref_sse(case.body))
    server.enqueue(script(case, chunks))
    client = await new_client(case, server)
    try:
        out = await run_async(client)
    finally:
        await client.aclose()
    check_all(out, case.expected(), case)
    assert len(server.requests) == 1


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_replay_at_random_boundaries(case: Case) -> None:
    """Hypothesis picks the split points; over HTTP and straight into the decoder the
    events must be the same as at the event boundaries, and as the reference says."""
    exp = case.expected()
    body = case.body
    n = len(body)
    point = st.one_of(st.integers(1, n - 1),
                      *(st.sampled_from(group) for group in tricky_point_groups(body) if group))

    def points_of(singles: list[int], runs: list[tuple[int, int]]) -> list[int]:
        points = set(singles)
        for start, length in runs:  # a run of 1-byte chunks
            points.update(range(start, min(n, start + length)))
        return sorted(p for p in points if 0 < p < n)

    strategy = st.builds(points_of, st.lists(point, max_size=40),
                         st.lists(st.tuples(st.integers(1, n - 1), st.integers(1, 80)),
                                  max_size=2))
    loop = asyncio.new_event_loop()
    try:
        with ReplayServer() as server:
            client = loop.run_until_complete(new_client(case, server))
            try:
                server.enqueue(script(case, case.boundary_chunks()))
                baseline = loop.run_until_complete(run_async(client))
                check_all(baseline, exp, case, kind=False)
                want = canon(baseline, exp)

                @SPLIT_SETTINGS
                @given(points=strategy)
                def replay(points: list[int]) -> None:
                    chunks = split(body, points)
                    server.enqueue(script(case, chunks))
                    out = loop.run_until_complete(run_async(client))
                    assert canon(out, exp) == want
                    check_response(out)
                    assert canon(run_sans_io(case, chunks), exp) == want

                replay()
            finally:
                loop.run_until_complete(client.aclose())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def dense_chunks(body: bytes, limit: int = 6000) -> list[bytes]:
    """1-byte chunks over the whole body, or (for big bodies) over its start, its end
    and around every multi-byte character, with the rest in larger pieces."""
    if len(body) <= limit:
        return split(body, range(1, len(body)))
    points: set[int] = set(range(1, 2000)) | set(range(len(body) - 2000, len(body)))
    for i, byte in enumerate(body):
        if byte >= 0x80:
            points.update(range(max(1, i - 300), min(len(body), i + 300)))
    points.update(event_boundaries(body))
    return split(body, sorted(points))


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
async def test_replay_in_one_byte_chunks(case: Case, server: ReplayServer) -> None:
    chunks = dense_chunks(case.body)
    server.enqueue(script(case, case.boundary_chunks()), script(case, chunks))
    client = await new_client(case, server)
    try:
        baseline = await run_async(client)
        out = await run_async(client)
    finally:
        await client.aclose()
    exp = case.expected()
    check_all(out, exp, case, kind=False)
    assert canon(out, exp) == canon(baseline, exp)
    assert canon(run_sans_io(case, chunks), exp) == canon(baseline, exp)


# =============================================================== 7. sync twin


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_sync_twin_gives_the_same_events(case: Case) -> None:
    exp = case.expected()
    with ReplayServer() as server:
        server.enqueue(script(case, case.boundary_chunks()))

        async def go() -> Outcome:
            client = await new_client(case, server)
            try:
                return await run_async(client)
            finally:
                await client.aclose()

        async_out = asyncio.run(go())
        server.enqueue(script(case, split(case.body, tricky_points(case.body))))
        with new_sync_client(case, server) as client:
            sync_out = run_sync(client)
    check_all(sync_out, exp, case, kind=False)
    assert canon(sync_out, exp) == canon(async_out, exp)


# =============================================================== 2. sequence details


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.pins.get("calls")
                                  and c.pins["calls"][0][0] is None], ids=case_id)
async def test_tool_call_started_carries_the_final_id(case: Case, server: ReplayServer) -> None:
    """When the provider sends no call id, the synthesized id is the one the call is
    known by: tool_call_started must announce the same id that tool_call_ended and
    the response carry (a consumer keys its UI / bookkeeping on the started event)."""
    server.enqueue(script(case, case.boundary_chunks()))
    client = await new_client(case, server)
    try:
        out = await run_async(client)
    finally:
        await client.aclose()
    started = [e.as_tool_call_started for e in out.events if e.is_tool_call_started]
    ended = [e.as_tool_call_ended for e in out.events if e.is_tool_call_ended]
    assert ended and len(started) == len(ended)
    for s, e in zip(started, ended, strict=True):
        assert e.tool_call.id
        assert s.id == e.tool_call.id


def openai_chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
                 usage: dict[str, Any] | None = None) -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                           "created": 1782955817, "model": "gpt-4o-mini-2024-07-18"}
    if usage is not None:
        obj["choices"] = []
        obj["usage"] = usage
    else:
        obj["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None,
                           "finish_reason": finish}]
        obj["usage"] = None
    return sse_event(obj)


def openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}


DONE = b"data: [DONE]\n\n"


def openai_text_stream(pieces: Sequence[str], *, done: bool = True) -> list[bytes]:
    chunks = [openai_chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [openai_chunk({"content": p}) for p in pieces]
    chunks += [openai_chunk({}, finish="stop"), openai_chunk(usage=openai_usage(9, len(pieces)))]
    return [*chunks, DONE] if done else chunks


async def test_ttft_counts_any_output_and_not_after_latency(server: ReplayServer) -> None:
    openai = RECORDED[0]
    server.enqueue(script(openai, openai.boundary_chunks()),
                   script(openai, openai_text_stream(["Once", " upon"])))
    client = await new_client(openai, server)
    try:
        tools_only = await run_async(client)
        with_text = await run_async(client)
    finally:
        await client.aclose()
    # The first output of any kind is the first token: here, a tool-call fragment.
    assert not any(e.is_content_delta for e in tools_only.events)
    assert any(e.is_tool_call_started for e in tools_only.events)
    assert tools_only.stats.ttft_ms is not None
    assert 0 <= tools_only.stats.ttft_ms <= tools_only.stats.latency_ms
    assert with_text.stats.ttft_ms is not None
    assert 0 <= with_text.stats.ttft_ms <= with_text.stats.latency_ms
    assert with_text.stats.attempts == 1
    assert with_text.response.content == "Once upon"


# =============================================================== 3. errors in a 200 stream


async def stream_with(server: ReplayServer, model: str, prefix: str,
                      *responses: ScriptedResponse, max_retries: int = 2,
                      user: str = "Tell me a story") -> tuple[Outcome, FakeClock]:
    server.enqueue(*responses)
    clock = FakeClock()
    client = await new_client(model, server, prefix, max_retries=max_retries, clock=clock)
    try:
        return await run_async(client, user), clock
    finally:
        await client.aclose()


ANTHROPIC = "anthropic/claude-sonnet-4-20250514"


async def test_anthropic_error_event_after_text(server: ReplayServer) -> None:
    body = [anthropic_message_start(43, 0), *anthropic_text_block(0, ["Once upon", " a time"]),
            b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            b'"message": "Overloaded"}}\n\n']
    out, clock = await stream_with(server, ANTHROPIC, "", ScriptedResponse.sse(body))
    assert [e.type for e in out.events] == ["content_delta", "content_delta"]
    assert [e.as_content_delta.text for e in out.events] == ["Once upon", " a time"]
    assert out.error is not None
    assert out.error.kind == "overloaded"
    assert out.error.message == "Overloaded"
    # overloaded is retryable, but events were already delivered: no retry.
    assert len(server.requests) == 1
    assert clock.delays == []


async def test_openai_error_chunk_after_text(server: ReplayServer) -> None:
    body = [*openai_text_stream(["Hello", " wor"], done=False)[:3],
            sse_event({"error": {"message": "The server had an error while processing your "
                                 "request. Sorry about that!", "type": "server_error",
                                 "param": None, "code": None}})]
    out, clock = await stream_with(server, "openai/gpt-4o-mini", "/v1",
                                   ScriptedResponse.sse(body))
    assert [e.as_content_delta.text for e in out.events] == ["Hello", " wor"]
    assert out.error is not None
    assert out.error.kind == "server_error"
    assert out.error.message.startswith("The server had an error")
    assert len(server.requests) == 1
    assert clock.delays == []


async def test_openai_error_chunk_is_classified_by_code(server: ReplayServer) -> None:
    body = [*openai_text_stream(["Hi"], done=False)[:2],
            sse_event({"error": {"message": "Rate limit reached for gpt-4o-mini. Please try "
                                 "again in 2s.", "type": "tokens", "param": None,
                                 "code": "rate_limit_exceeded"}})]
    out, _ = await stream_with(server, "openai/gpt-4o-mini", "/v1", ScriptedResponse.sse(body))
    assert [e.as_content_delta.text for e in out.events] == ["Hi"]
    assert out.error is not None and out.error.kind == "rate_limited"
    assert len(server.requests) == 1


async def test_ollama_error_line_after_content(server: ReplayServer) -> None:
    # NDJSON in the real Ollama format (WIREFORMATS section 7, docs/api/errors.mdx):
    # the HTTP status is already 200, so the error arrives as a {"error": "..."} line.
    body = [ollama_chunk("The"), ollama_chunk(" sky"),
            ollama_line({"error": "an error was encountered while running the model"})]
    out, clock = await stream_with(server, "ollama/llama3.2", "",
                                   ScriptedResponse(headers=[("Content-Type", NDJSON)],
                                                    chunks=body))
    assert [e.as_content_delta.text for e in out.events] == ["The", " sky"]
    assert out.error is not None
    assert out.error.kind == "server_error"
    assert out.error.message == "an error was encountered while running the model"
    assert len(server.requests) == 1
    assert clock.delays == []


def gemini_event(text: str, finish: str | None = None) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    obj = {"candidates": [cand], "usageMetadata": {"promptTokenCount": 7,
           "candidatesTokenCount": 3, "totalTokenCount": 10}, "modelVersion": "gemini-2.0-flash"}
    return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"


INCOMPLETE = [
    # OpenAI: everything but the `data: [DONE]` terminator.
    ("openai/gpt-4o-mini", "/v1", "text/event-stream",
     openai_text_stream(["Hello", " world"], done=False), "Hello world"),
    # OpenAI: the body stops inside a JSON object.
    ("openai/gpt-4o-mini", "/v1", "text/event-stream",
     [*openai_text_stream(["Hello"], done=False)[:2],
      b'data: {"id":"chatcmpl-test","choices":[{"index":0,"delta":{"content":"lo'], "Hello"),
    # Anthropic: message_delta arrived, message_stop did not.
    (ANTHROPIC, "", "text/event-stream",
     [anthropic_message_start(43, 0), *anthropic_text_block(0, ["Once", " upon"]),
      anthropic_stop(0),
      sse_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                 "usage": {"output_tokens": 5}}, "message_delta")], "Once upon"),
    # Anthropic: cut inside a content_block_delta's JSON.
    (ANTHROPIC, "", "text/event-stream",
     [anthropic_message_start(43, 0), *anthropic_text_block(0, ["Once"]),
      b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'],
     "Once"),
    # Gemini: a text chunk, then EOF without any finishReason.
    ("gemini/gemini-2.0-flash", "/v1beta", "text/event-stream",
     [gemini_event("Hello"), gemini_event(" there")], "Hello there"),
    # Gemini: cut inside the JSON of the second event.
    ("gemini/gemini-2.0-flash", "/v1beta", "text/event-stream",
     [gemini_event("Hello"), gemini_event(" there", "STOP")[:40]], "Hello"),
    # Ollama: content lines but never the done:true object.
    ("ollama/llama3.2", "", NDJSON, [ollama_chunk("Why"), ollama_chunk(" is")], "Why is"),
]


@pytest.mark.parametrize(("model", "prefix", "ctype", "chunks", "text"), INCOMPLETE,
                         ids=[f"{m.split('/')[0]}-{i}" for i, (m, *_) in enumerate(INCOMPLETE)])
async def test_body_ending_early_is_incomplete_stream(
        server: ReplayServer, model: str, prefix: str, ctype: str, chunks: list[bytes],
        text: str) -> None:
    response = ScriptedResponse(headers=[("Content-Type", ctype)], chunks=chunks)
    out, clock = await stream_with(server, model, prefix, response)
    assert "".join(e.as_content_delta.text for e in out.events if e.is_content_delta) == text
    assert not any(e.is_finished for e in out.events)
    assert out.error is not None, "a truncated body must not look like a complete stream"
    assert out.error.kind == "incomplete_stream"
    assert out.error.partial is not None
    assert out.error.partial.content == text
    assert len(server.requests) == 1
    assert clock.delays == []


RATE_LIMIT_BODY = {"error": {"message": "Rate limit reached for gpt-4o-mini in organization "
                             "org-x on tokens per min (TPM). Please try again in 2s.",
                             "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}


async def test_429_before_the_stream_is_retried(server: ReplayServer) -> None:
    limited = ScriptedResponse.json(RATE_LIMIT_BODY, status=429, headers=[("retry-after", "1")])
    ok = ScriptedResponse.sse(openai_text_stream(["Once", " upon", " a time"]))
    out, clock = await stream_with(server, "openai/gpt-4o-mini", "/v1", limited, ok,
                                   max_retries=2)
    assert out.error is None, out.error
    assert out.response.content == "Once upon a time"
    assert out.stats.attempts == 2
    assert len(server.requests) == 2
    assert clock.delays == [1.0]
    check_sequence(out.events)
    check_response(out)


async def test_429_without_retries_raises_rate_limited(server: ReplayServer) -> None:
    limited = ScriptedResponse.json(RATE_LIMIT_BODY, status=429, headers=[("retry-after", "1")])
    out, clock = await stream_with(server, "openai/gpt-4o-mini", "/v1", limited, max_retries=0)
    assert out.events == []
    assert out.error is not None
    assert out.error.kind == "rate_limited"
    assert out.error.status == 429
    assert out.error.retry_after == 1.0
    assert out.error.partial is None
    assert len(server.requests) == 1
    assert clock.delays == []


async def test_anthropic_529_before_the_stream_is_retried(server: ReplayServer) -> None:
    overloaded = ScriptedResponse.json(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        status=529)
    ok = ScriptedResponse.sse([anthropic_message_start(43, 0),
                               *anthropic_text_block(0, ["Hi", " there"]), anthropic_stop(0),
                               sse_event({"type": "message_delta",
                                          "delta": {"stop_reason": "end_turn"},
                                          "usage": {"output_tokens": 3}}, "message_delta"),
                               sse_event({"type": "message_stop"}, "message_stop")])
    out, clock = await stream_with(server, ANTHROPIC, "", overloaded, ok, max_retries=1)
    assert out.error is None, out.error
    assert out.response.content == "Hi there"
    assert out.response.finish_reason == "stop"
    assert len(server.requests) == 2
    assert len(clock.delays) == 1


async def test_sync_error_after_events_is_not_retried(server: ReplayServer) -> None:
    body = [anthropic_message_start(43, 0), *anthropic_text_block(0, ["Once"]),
            b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            b'"message": "Overloaded"}}\n\n']
    server.enqueue(ScriptedResponse.sse(body))
    clock = FakeClock()
    case = CONSTRUCTED[0]
    with new_sync_client(case, server, max_retries=3, clock=clock) as client:
        out = await asyncio.to_thread(run_sync, client)
    assert [e.as_content_delta.text for e in out.events] == ["Once"]
    assert out.error is not None and out.error.kind == "overloaded"
    assert len(server.requests) == 1
    assert clock.delays == []


# =============================================================== 4. Ollama NDJSON


async def test_ollama_ndjson_stream(server: ReplayServer) -> None:
    case = CONSTRUCTED[1]
    server.enqueue(script(case, case.boundary_chunks()))
    client = await new_client(case, server)
    try:
        out = await run_async(client)
    finally:
        await client.aclose()
    check_all(out, case.expected(), case)
    assert out.response.content == "Let me look that up — 東京 🗼"
    [call] = out.response.tool_calls
    assert call.name == "get_weather"
    assert call.arguments == {"city": "Tokyo", "days": 3}
    assert isinstance(call.id, str) and call.id
    assert out.response.finish_reason == "tool_calls"
    assert (out.response.usage.prompt_tokens, out.response.usage.completion_tokens,
            out.response.usage.total_tokens) == (169, 18, 187)
    assert out.stats.ttft_ms is not None


# =============================================================== 5. the request


def minimal_stream(provider: str) -> ScriptedResponse:
    if provider in ("openai", "deepseek"):
        return ScriptedResponse.sse(openai_text_stream(["ok"]))
    if provider == "anthropic":
        return ScriptedResponse.sse([ANTHROPIC_TOOL_BODY])
    if provider == "gemini":
        return ScriptedResponse.sse([gemini_event("ok", "STOP")])
    return ScriptedResponse(headers=[("Content-Type", NDJSON)], chunks=[OLLAMA_TOOL_BODY])


@pytest.mark.parametrize(("model", "prefix", "path"), [
    ("openai/gpt-4o-mini", "/v1", "/v1/chat/completions"),
    ("deepseek/deepseek-reasoner", "", "/chat/completions"),
    (ANTHROPIC, "", "/v1/messages"),
    ("gemini/gemini-2.0-flash", "/v1beta",
     "/v1beta/models/gemini-2.0-flash:streamGenerateContent"),
    ("ollama/llama3.2", "", "/api/chat"),
])
async def test_stream_request_shape(server: ReplayServer, model: str, prefix: str,
                                    path: str) -> None:
    provider, name = model.split("/", 1)
    out, _ = await stream_with(server, model, prefix, minimal_stream(provider), max_retries=0,
                               user="Tell me a story")
    assert out.error is None, out.error
    [req] = server.requests
    assert req.method == "POST"
    assert req.url_path == path
    body = req.json()
    if provider in ("openai", "deepseek"):
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["model"] == name
        assert body["messages"][-1] == {"role": "user", "content": "Tell me a story"}
    elif provider == "anthropic":
        assert body["stream"] is True
        assert body["model"] == name
        assert req.header("anthropic-version") == "2023-06-01"
        assert req.header("x-api-key") == "sk-test-streaming"
    elif provider == "gemini":
        assert req.query == {"alt": ["sse"]}
        assert ":generateContent" not in req.path
        assert "stream" not in body  # streaming is chosen by the URL, not the body
        assert body["contents"][-1]["parts"] == [{"text": "Tell me a story"}]
    else:
        assert body["stream"] is True
        assert body["model"] == name


# =============================================================== 6. concurrency


def tagged_openai_stream(tag: str, k: int) -> list[bytes]:
    """A stream whose text and tool-call arguments are unique to ``tag``."""
    call = {"index": 0, "id": f"call_{tag}", "type": "function",
            "function": {"name": f"lookup_{tag}", "arguments": ""}}
    args = ['{"tag": "', tag, '", "n": ', str(k), ', "s": "', f"{tag}-ü-{k}", '"}']
    chunks = [openai_chunk({"role": "assistant", "content": ""})]
    chunks += [openai_chunk({"content": f"<{tag}:{i}>"}) for i in range(4)]
    chunks.append(openai_chunk({"tool_calls": [call]}))
    chunks += [openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
               for a in args]
    chunks += [openai_chunk({}, finish="tool_calls"), openai_chunk(usage=openai_usage(k, 10 + k)),
               DONE]
    return chunks


def tag_handler(delay: float) -> Callable[[Any], ScriptedResponse]:
    def handle(req: Any) -> ScriptedResponse:
        user = req.json()["messages"][-1]["content"]
        tag, k = user.split(":")
        response = ScriptedResponse.sse(tagged_openai_stream(tag, int(k)))
        response.chunk_delay = delay
        return response
    return handle


def check_tagged(out: Outcome, tag: str, k: int) -> None:
    assert out.error is None, out.error
    assert out.response.content == "".join(f"<{tag}:{i}>" for i in range(4))
    [call] = out.response.tool_calls
    assert (call.id, call.name) == (f"call_{tag}", f"lookup_{tag}")
    assert call.arguments == {"tag": tag, "n": k, "s": f"{tag}-ü-{k}"}
    assert out.response.usage.prompt_tokens == k
    assert out.response.usage.completion_tokens == 10 + k
    check_sequence(out.events)
    check_response(out)


def overlapping(order: list[str], tags: Sequence[str]) -> bool:
    """Every pair of streams interleaved: each one's first event came before the
    other's last event."""
    first = {t: order.index(t) for t in tags}
    last = {t: len(order) - 1 - order[::-1].index(t) for t in tags}
    return all(first[a] < last[b] for a in tags for b in tags if a != b)


@pytest.mark.parametrize("count", [2, 5])
async def test_concurrent_streams_on_one_client(server: ReplayServer, count: int) -> None:
    server.handler = tag_handler(0.02)
    client = await new_client("openai/gpt-4o-mini", server, "/v1")
    order: list[str] = []
    tags = [f"s{i}" for i in range(count)]

    async def one(tag: str, k: int) -> Outcome:
        stream = client.chat().user(f"{tag}:{k}").stream()
        events = []
        async for event in stream:
            order.append(tag)
            events.append(event)
        return Outcome(events, stream.response, stream.stats)

    try:
        outs = await asyncio.gather(*(one(tag, k) for k, tag in enumerate(tags)))
    finally:
        await client.aclose()
    for k, (tag, out) in enumerate(zip(tags, outs, strict=True)):
        check_tagged(out, tag, k)
    assert overlapping(order, tags), order
    assert len(server.requests) == count


def test_concurrent_sync_streams_on_one_client() -> None:
    tags = ["a", "b", "c"]
    order: list[str] = []
    lock = threading.Lock()
    outs: dict[str, Outcome] = {}
    barrier = threading.Barrier(len(tags))
    with ReplayServer(tag_handler(0.02)) as server, SyncAiClient.create(
            "openai/gpt-4o-mini", api_key="sk-test-streaming", base_url=server.url + "/v1",
            max_retries=0, timeout=10.0) as client:

        def one(tag: str, k: int) -> None:
            stream = client.chat().user(f"{tag}:{k}").stream()
            events = []
            barrier.wait()
            for event in stream:
                with lock:
                    order.append(tag)
                events.append(event)
            outs[tag] = Outcome(events, stream.response, stream.stats)

        threads = [threading.Thread(target=one, args=(t, k)) for k, t in enumerate(tags)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    for k, tag in enumerate(tags):
        check_tagged(outs[tag], tag, k)
    assert overlapping(order, tags), order


# =============================================================== 8. cancellation


def endless_openai() -> ScriptedResponse:
    """Two content chunks, then the server keeps the response open forever."""
    return ScriptedResponse(headers=[("Content-Type", "text/event-stream")],
                            chunks=openai_text_stream(["first", " second"])[:3],
                            fault="hang_after_body_start", fault_after_chunks=3)


async def test_leaving_async_with_closes_the_connection(server: ReplayServer) -> None:
    server.enqueue(endless_openai(), ScriptedResponse.sse(openai_text_stream(["again"])))
    client = await new_client("openai/gpt-4o-mini", server, "/v1")
    try:
        seen: list[str] = []
        stream = client.chat().user("x").stream()
        async with stream:
            async for event in stream:
                if event.is_content_delta:
                    seen.append(event.as_content_delta.text)
                    break
        assert seen == ["first"]
        assert await asyncio.to_thread(server.wait_for_disconnect, 5.0)
        with pytest.raises(EngineError):
            _ = stream.response  # the stream never finished
        after = await run_async(client)
    finally:
        await client.aclose()
    assert after.error is None, after.error
    assert after.response.content == "again"
    assert len(server.requests) == 2


async def test_aclose_mid_stream_closes_the_connection(server: ReplayServer) -> None:
    server.enqueue(endless_openai(), ScriptedResponse.sse(openai_text_stream(["again"])))
    client = await new_client("openai/gpt-4o-mini", server, "/v1")
    try:
        stream = client.chat().user("x").stream()
        texts = []
        async for event in stream:
            if event.is_content_delta:
                texts.append(event.as_content_delta.text)
            if len(texts) == 2:
                break
        started = time.monotonic()
        await stream.aclose()
        assert await asyncio.to_thread(server.wait_for_disconnect, 5.0)
        assert time.monotonic() - started < 5.0
        assert texts == ["first", " second"]
        after = await run_async(client)
    finally:
        await client.aclose()
    assert after.error is None, after.error
    assert after.response.content == "again"


def test_sync_close_mid_stream_closes_the_connection() -> None:
    with ReplayServer() as server:
        server.enqueue(endless_openai(), ScriptedResponse.sse(openai_text_stream(["again"])))
        with SyncAiClient.create("openai/gpt-4o-mini", api_key="sk-test-streaming",
                                 base_url=server.url + "/v1", max_retries=0,
                                 timeout=10.0) as client:
            stream = client.chat().user("x").stream()
            with stream:
                for event in stream:
                    if event.is_content_delta:
                        break
            assert server.wait_for_disconnect(5.0)
            after = run_sync(client)
    assert after.error is None, after.error
    assert after.response.content == "again"
