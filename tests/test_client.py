"""The client API around the core: auth schemes, key handling, builder checks,
logging, pools, the sync twin. Provider-specific shapes are in test_e2e_chat."""

from __future__ import annotations

import json
import logging
import textwrap

import httpx
import pytest

from engine import AiClient, EngineError, Message, SyncAiClient
from engine.client import Clock
from engine.manifest import clear_cache

CUSTOM = """\
manifest: 1
id: {id}
base_url: https://custom.test/api
headers: {{x-custom-version: "7", x-model-echo: "{{{{ model }}}}"}}
auth: {auth}
chat:
  path: "/{{{{ model | path_segment }}}}/chat"
  query: {{mode: fast}}
  body:
    model: "{{{{ model }}}}"
    prompt: "{{{{ messages[-1].content }}}}"
    temperature: "{{{{ params.temperature }}}}"
  response:
    content: answer
    finish_reason: status
    usage: {{prompt_tokens: usage.in, completion_tokens: usage.out}}
finish_reasons: {{done: stop}}
"""

ANSWER = {"answer": "fine", "status": "done", "usage": {"in": 3, "out": 4}}


class FakeClock(Clock):
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def custom(tmp_path, monkeypatch):
    """Write a custom manifest into a user directory on AI_PROTOCOL_PATH."""

    def make(auth: str, name: str = "custom") -> str:
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(CUSTOM.format(id=name, auth=auth)))
        monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
        clear_cache()
        return name

    yield make
    clear_cache()


def recorder(responses=None):
    seen: list[httpx.Request] = []
    queue = list(responses or [])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if queue else httpx.Response(200, json=ANSWER)

    return seen, handler


async def test_query_auth_path_segment_and_headers(custom):
    name = custom("{scheme: query, param: key, env: [CUSTOM_KEY]}")
    seen, handler = recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create(f"{name}/org/model:v1", api_key="k-123456",
                                       http_client=http)
        resp = await client.chat().user("hi").temperature(0).execute()
    request = seen[0]
    assert str(request.url) == "https://custom.test/api/org%2Fmodel%3Av1/chat?mode=fast&key=k-123456"
    assert request.headers["x-custom-version"] == "7"
    assert request.headers["x-model-echo"] == "org/model:v1"
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {"model": "org/model:v1", "prompt": "hi",
                                           "temperature": 0}
    assert (resp.content, resp.finish_reason, resp.usage.total_tokens) == ("fine", "stop", 7)


async def test_header_auth_with_prefix_and_env_key(custom, monkeypatch):
    name = custom("{scheme: header, header: X-Token, prefix: 'Token ', env: [A_KEY, B_KEY]}")
    monkeypatch.delenv("A_KEY", raising=False)
    monkeypatch.setenv("B_KEY", "from-env-b")
    seen, handler = recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create(f"{name}/m", http_client=http)
        await client.chat().user("hi").execute()
    assert seen[0].headers["x-token"] == "Token from-env-b"


async def test_missing_key_is_a_clear_error(custom, monkeypatch):
    name = custom("{scheme: bearer, env: [NOPE_KEY_1, NOPE_KEY_2]}")
    monkeypatch.delenv("NOPE_KEY_1", raising=False)
    monkeypatch.delenv("NOPE_KEY_2", raising=False)
    client = await AiClient.create(f"{name}/m")
    with pytest.raises(EngineError) as info:
        await client.chat().user("hi").execute()
    assert info.value.kind == "authentication"
    assert "NOPE_KEY_1 or NOPE_KEY_2" in info.value.message
    await client.aclose()


async def test_unknown_provider_and_bad_model_ids():
    with pytest.raises(EngineError) as info:
        await AiClient.create("no-such-provider/model")
    assert info.value.kind == "invalid_request" and "AI_PROTOCOL_PATH" in info.value.message
    for bad in ("gpt-4o", "/model", "openai/", ""):
        with pytest.raises(EngineError):
            await AiClient.create(bad)


async def test_builder_validates_early():
    client = await AiClient.create("openai/gpt-4o", api_key="sk-x-1234")
    chat = client.chat()
    for call in (lambda: chat.temperature("hot"), lambda: chat.max_tokens(0),
                 lambda: chat.max_tokens(True), lambda: chat.stop([1]),
                 lambda: chat.tool_choice(42), lambda: chat.tools([{"description": "x"}]),
                 lambda: chat.message({"role": "wizard", "content": "x"})):
        with pytest.raises(EngineError) as info:
            call()
        assert info.value.kind == "invalid_request"
    with pytest.raises(EngineError, match="at least one message"):
        await client.chat().execute()
    await client.aclose()


async def test_base_url_override_and_extra_body():
    seen, handler = recorder([httpx.Response(200, json={
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}]})])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("openai/gpt-4o", api_key="sk-x-1234",
                                       base_url="http://proxy.local:8080/openai/v1/",
                                       http_client=http)
        resp = await (client.chat().user("hi").extra_body({"user": "u-1", "stream": None})
                      .execute())
    assert str(seen[0].url) == "http://proxy.local:8080/openai/v1/chat/completions"
    assert json.loads(seen[0].content) == {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"}], "user": "u-1"}
    assert resp.content == "ok" and resp.usage.total_tokens == 0


async def test_repr_and_logs_never_show_the_key(caplog):
    key = "sk-live-SENTINEL-abcdef123456"
    seen, handler = recorder([httpx.Response(401, json={"error": {
        "message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
        "code": "invalid_api_key"}})])
    caplog.set_level(logging.DEBUG, logger="engine")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("openai/gpt-4o", api_key=key, http_client=http)
        with pytest.raises(EngineError) as info:
            await client.chat().user("hi").execute()
    err = info.value
    assert err.kind == "authentication" and not err.retryable and len(seen) == 1
    texts = [str(err), repr(err), err.message, repr(client), *(r.getMessage() for r in
                                                                caplog.records)]
    assert all(key not in t for t in texts)
    assert any("POST https://api.openai.com/v1/chat/completions" in r.getMessage()
               for r in caplog.records)


async def test_retries_with_backoff_then_success():
    fail = httpx.Response(503, json={"error": {"message": "busy", "type": "server_error"}})
    ok = httpx.Response(200, json={"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "third time"}}]})
    seen, handler = recorder([fail, fail, ok])
    clock = FakeClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("openai/gpt-4o", api_key="sk-x-1234", http_client=http,
                                       clock=clock, max_retries=2)
        resp, stats = await client.chat().user("hi").execute_with_stats()
    assert len(seen) == 3 and stats.attempts == 3
    assert resp.content == "third time"
    assert len(clock.slept) == 2 and 0 <= clock.slept[0] <= 0.5 and 0 <= clock.slept[1] <= 1.0
    assert stats.latency_ms == pytest.approx(sum(clock.slept) * 1000)


async def test_per_call_retry_override():
    fail = httpx.Response(500, json={"error": {"message": "oops"}})
    seen, handler = recorder([fail, fail, fail])
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("openai/gpt-4o", api_key="sk-x-1234", http_client=http,
                                       clock=FakeClock(), max_retries=5)
        with pytest.raises(EngineError) as info:
            await client.chat().user("hi").retry(max_retries=1).execute()
    assert len(seen) == 2 and info.value.attempts == 2 and info.value.kind == "server_error"


async def test_shared_http_client_is_left_open():
    _, handler = recorder()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    a = await AiClient.create("openai/gpt-4o", api_key="sk-x-1234", http_client=http)
    b = await AiClient.create("deepseek/deepseek-chat", api_key="sk-y-1234", http_client=http)
    await a.aclose()
    await b.aclose()
    assert not http.is_closed
    await http.aclose()


def test_sync_twin_shares_the_core(custom):
    name = custom("{scheme: bearer, env: [CUSTOM_KEY]}")
    seen, handler = recorder()
    with httpx.Client(transport=httpx.MockTransport(handler)) as http, SyncAiClient.create(
            f"{name}/m", api_key="k-abcdef", http_client=http) as client:
        resp, stats = client.chat().messages([Message.user("a"), {"role": "user",
                                                                   "content": "b"}]
                                             ).execute_with_stats()
    assert json.loads(seen[0].content)["prompt"] == "b"
    assert seen[0].headers["authorization"] == "Bearer k-abcdef"
    assert resp.content == "fine" and stats.total_tokens == 7 and stats.latency_ms >= 0


async def test_capabilities_refuse_before_sending():
    seen, handler = recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("ollama/llama3.2", http_client=http)
        tool = {"name": "f", "parameters": {"type": "object", "properties": {}}}
        with pytest.raises(EngineError) as info:
            await client.chat().user("hi").tools([tool]).tool_choice("required").execute()
    assert info.value.kind == "invalid_request" and not info.value.retryable
    assert "tool_choice 'required'" in info.value.message and seen == []


async def test_tool_loop_sends_back_the_provider_opaque_signature():
    """Gemini: a functionCall's thoughtSignature must come back in the next turn."""
    from pathlib import Path

    body = json.loads((Path(__file__).parent / "data/responses/gemini_generate_tool_call.json")
                      .read_text())
    signature = body["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    final = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Sunny."}]},
                             "finishReason": "STOP"}]}
    seen, handler = recorder([httpx.Response(200, json=body), httpx.Response(200, json=final)])
    tool = {"name": "weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}}}}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("gemini/gemini-2.5-flash", api_key="g-key-123",
                                       http_client=http)
        first = await client.chat().user("Weather in SF?").tools([tool]).execute()
        [call] = first.tool_calls
        assert call.extra == {"thoughtSignature": signature}
        second = await (client.chat().user("Weather in SF?").message(first.to_message())
                        .tool(call.id, "sunny").tools([tool]).execute())
    model_turn = json.loads(seen[1].content)["contents"][1]
    assert model_turn == {"role": "model", "parts": [{
        "functionCall": {"name": "weather", "args": call.arguments},
        "thoughtSignature": signature}]}
    assert second.content == "Sunny."
