"""Observability (issue 10, item 4): hooks for every attempt, and OpenTelemetry GenAI spans.

Hooks see each request before it is sent and exactly one outcome per attempt, with the
provider, model, redacted request, status, usage and latency; a hook that raises is logged
and the call goes on. OpenTelemetry spans are checked with the SDK's in-memory exporter.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from answers import OPENAI_HI as ANSWER
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from engine import AiClient, EngineError, RetryPolicy, SyncAiClient
from engine.conformance.server import ReplayServer, ScriptedResponse
from engine.hooks import CallInfo
from engine.otel import OpenTelemetryHook, default_hook

MODEL = "openai/gpt-4o-mini"
KEY = "sk-hooks-0123456789abcdef"
OVERLOADED = {"error": {"message": "The server is overloaded", "type": "server_error",
                        "code": "server_is_overloaded"}}
STREAM = [b'data: {"choices":[{"index":0,"delta":{"content":"he"}}]}\n\n',
          b'data: {"choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}\n\n',
          b"data: [DONE]\n\n"]
FAST = RetryPolicy(max_retries=2, backoff_base=0.0, backoff_max=0.0)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, CallInfo]] = []

    def on_request(self, info: CallInfo) -> None:
        self.seen.append(("request", info))

    def on_response(self, info: CallInfo) -> None:
        self.seen.append(("response", info))

    def on_error(self, info: CallInfo) -> None:
        self.seen.append(("error", info))


def test_hooks_see_every_attempt_and_one_outcome_each() -> None:
    script = [ScriptedResponse.json(OVERLOADED, status=503), ScriptedResponse.json(ANSWER)]
    recorder = Recorder()
    with ReplayServer() as server:
        server.enqueue(*script)
        with SyncAiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1", retry=FAST,
                                 hooks=[recorder]) as client:
            client.chat().user("hi").temperature(0.5).max_tokens(10).execute()
    events = [(name, info.attempt) for name, info in recorder.seen]
    assert events == [("request", 1), ("error", 1), ("request", 2), ("response", 2)]
    failed, answered = recorder.seen[1][1], recorder.seen[3][1]
    assert failed.status == 503 and failed.will_retry is True
    assert failed.error is not None and failed.error.kind == "overloaded"
    assert answered.provider == "openai" and answered.model == "gpt-4o-mini"
    assert answered.request == f"POST {server.url}/v1/chat/completions"
    assert answered.status == 200 and answered.finish_reason == "stop"
    assert answered.usage is not None and answered.usage.total_tokens == 4
    assert answered.params == {"temperature": 0.5, "max_tokens": 10}
    assert answered.latency_ms is not None and answered.latency_ms >= 0
    assert answered.stream is False and answered.operation == "chat"
    assert KEY not in repr(recorder.seen)


async def test_async_stream_hooks_and_a_final_error() -> None:
    recorder = Recorder()
    with ReplayServer() as server:
        server.enqueue(ScriptedResponse.sse(STREAM),
                       ScriptedResponse.json({"error": {"message": "bad key", "type": "x",
                                                        "code": "invalid_api_key"}}, status=401))
        async with await AiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1",
                                         retry=FAST, hooks=[recorder]) as client:
            stream = client.chat().user("hi").stream()
            async with stream:
                async for _ in stream:
                    pass
            with pytest.raises(EngineError):
                await client.chat().user("again").execute()
    names = [name for name, _ in recorder.seen]
    assert names == ["request", "response", "request", "error"]
    assert recorder.seen[1][1].stream is True and recorder.seen[1][1].usage is not None
    final = recorder.seen[3][1]
    assert final.status == 401 and final.will_retry is False
    assert final.error is not None and final.error.kind == "authentication"


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_request(self, info: CallInfo) -> None:
            raise RuntimeError("hook bug")

    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=ANSWER)))
    with caplog.at_level(logging.WARNING, logger="engine"), \
            SyncAiClient.create(MODEL, api_key=KEY, http_client=http, hooks=[Broken()]) as c:
        assert c.chat().user("hi").execute().content == "hi"
    assert any("hook Broken.on_request failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("hooks", [["not a hook"], "on_request", [object()]])
def test_hooks_are_checked_at_create(hooks: Any) -> None:
    with pytest.raises(EngineError) as caught:
        SyncAiClient.create(MODEL, api_key=KEY, hooks=hooks)
    assert caught.value.kind == "invalid_request" and "hook" in caught.value.message


@pytest.fixture
def spans() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_spans_follow_the_genai_conventions(spans: Any) -> None:
    provider, exporter = spans
    hook = OpenTelemetryHook(provider.get_tracer("test"))
    with ReplayServer() as server:
        server.enqueue(ScriptedResponse.json(OVERLOADED, status=503),
                       ScriptedResponse.json(ANSWER))
        with SyncAiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1", retry=FAST,
                                 hooks=[hook]) as client:
            client.chat().system("secret system text").user("secret user text") \
                .temperature(0.2).max_tokens(5).execute()
    failed, answered = exporter.get_finished_spans()
    assert failed.name == answered.name == "chat gpt-4o-mini"
    assert failed.kind == trace.SpanKind.CLIENT
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "overloaded"
    assert failed.attributes["http.response.status_code"] == 503
    assert dict(answered.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 5,
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 1,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert answered.status.status_code == StatusCode.UNSET
    text = repr([dict(s.attributes) for s in exporter.get_finished_spans()])
    assert "secret" not in text and KEY not in text


def test_spans_only_when_a_tracer_provider_is_configured(
        spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = spans
    assert default_hook() is None  # the default proxy provider: nothing to do
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert isinstance(default_hook(), OpenTelemetryHook)
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=ANSWER)))
    with SyncAiClient.create(MODEL, api_key=KEY, http_client=http) as client:
        client.chat().user("hi").execute()
    assert [s.name for s in exporter.get_finished_spans()] == ["chat gpt-4o-mini"]
