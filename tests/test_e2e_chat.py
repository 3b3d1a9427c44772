"""End-to-end tests of non-streaming chat through the public API, one provider manifest at a time.

Every test drives ``AiClient`` / ``SyncAiClient`` exactly as a user would and checks both
sides of the wire:

* the request that left the client: method, full URL (path and query), the headers that
  matter (auth with the key, provider version headers, content type) and the JSON body,
  compared as a whole dict;
* the normalized :class:`engine.ChatResponse` built from a real-format provider body.

Each test runs over two transports (the ``wire`` fixture): ``httpx.MockTransport`` in process,
with the client left on the manifest's real ``base_url``, and the loopback
``conformance.server.ReplayServer`` reached over TCP with ``base_url=server.url + <base path>``.

Response bodies live in ``tests/data/responses``; its README says where each one came from.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import AiClient, EngineError, Message, SyncAiClient, ToolCall, Usage
from engine.client import Clock
from engine.conformance.server import ReplayServer, ScriptedResponse

DATA = Path(__file__).parent / "data" / "responses"

PROVIDERS = ["openai", "anthropic", "gemini", "deepseek", "ollama"]
MODELS = {
    "openai": "openai/gpt-4o",
    "anthropic": "anthropic/claude-sonnet-4-5-20250929",
    "gemini": "gemini/gemini-2.5-flash",
    "deepseek": "deepseek/deepseek-chat",
    "ollama": "ollama/llama3.2",
}
# Test keys: distinctive, so a leak into a URL or an error text is easy to spot.
KEYS: dict[str, str | None] = {
    "openai": "sk-proj-e2eTESTkey0001",
    "anthropic": "sk-ant-api03-e2eTESTkey0002",
    "gemini": "AIzaSyE2eTESTkey0003",
    "deepseek": "sk-e2eTESTkey0004",
    "ollama": None,  # a local Ollama takes no key
}
OLLAMA_CLOUD_KEY = "ollama-e2eTESTkey0005"
ENV_KEYS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
            "DEEPSEEK_API_KEY", "OLLAMA_API_KEY"]

# Where each provider really lives (the manifests' base_url split into origin + base path).
REAL_ORIGIN = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "deepseek": "https://api.deepseek.com",
    "ollama": "http://localhost:11434",
}
BASE_PATH = {"openai": "/v1", "anthropic": "", "gemini": "/v1beta", "deepseek": "", "ollama": ""}
CHAT_PATH = {
    "openai": "/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/models/{model}:generateContent",
    "deepseek": "/chat/completions",
    "ollama": "/api/chat",
}

SYSTEM = "You are a terse assistant. Answer in one sentence."
# Quotes, a dash, a snowman and template syntax: all must reach the provider verbatim.
USER = 'What is the capital of France? Say "Paris" — {{ not a template }} ☃'

TEXT_REPLY = {
    "openai": "openai_chat_text.json",
    "anthropic": "anthropic_messages_text.json",
    "gemini": "gemini_generate_text_thoughts.json",
    "deepseek": "deepseek_chat_reasoner_text.json",
    "ollama": "ollama_chat_text.json",
}
TOOL_REPLY = {
    "openai": "openai_chat_tool_call.json",
    "anthropic": "anthropic_messages_tool_use.json",
    "gemini": "gemini_generate_tool_call.json",
    "deepseek": "deepseek_chat_tool_call.json",
    "ollama": "ollama_chat_tool_call.json",
}


def _schema(arg: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {arg: {"type": "string", "description": f"The {arg} to look up."}},
        "required": [arg],
    }


# The tool each recorded tool-call body answers (name and argument as in the recording).
TOOLS = {
    "openai": {"name": "get_temperature", "description": "Current temperature in a city.",
               "parameters": _schema("city")},
    "anthropic": {"name": "getWeather", "description": "Current weather in a city.",
                  "parameters": _schema("city")},
    "gemini": {"name": "weather", "description": "Current weather at a location.",
               "parameters": _schema("location")},
    "deepseek": {"name": "weather", "description": "Current weather at a location.",
                 "parameters": _schema("location")},
    "ollama": {"name": "get_weather", "description": "Current weather in a city.",
               "parameters": _schema("city")},
}


# --------------------------------------------------------------------------- wire plumbing


class FakeClock(Clock):
    """A clock that never sleeps: it records every requested delay and advances by it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def reply(name: str, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    content_type = "text/html" if name.endswith(".html") else "application/json"
    return Reply(status, (DATA / name).read_bytes(), content_type, headers)


def data(name: str) -> Any:
    return json.loads((DATA / name).read_bytes())


@dataclass(frozen=True)
class Sent:
    """One request as it left the client."""

    method: str
    url: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class Wire:
    """Scripted provider over httpx.MockTransport ("mock") or a loopback ReplayServer,
    reached over httpx ("loopback") or, by the async client, over aiohttp ("aiohttp")."""

    def __init__(self, kind: str, server: ReplayServer | None = None) -> None:
        self.kind = kind
        self.server = server
        self._queue: deque[Reply] = deque()
        self._sent: list[Sent] = []

    # -- scripting and inspection

    def enqueue(self, *replies: Reply) -> None:
        if self.server is None:
            self._queue.extend(replies)
            return
        self.server.enqueue(*(
            ScriptedResponse(status=r.status, headers=[("Content-Type", r.content_type),
                                                       *r.headers], chunks=[r.body])
            for r in replies))

    @property
    def sent(self) -> list[Sent]:
        if self.server is None:
            return list(self._sent)
        return [Sent(r.method, self.server.url + r.path,
                     {k.lower(): v for k, v in r.headers}, r.body)
                for r in self.server.requests]

    def url(self, provider: str, model: str) -> str:
        origin = REAL_ORIGIN[provider] if self.server is None else self.server.url
        return origin + BASE_PATH[provider] + CHAT_PATH[provider].format(model=model)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self._sent.append(Sent(request.method, str(request.url),
                               {k.lower(): v for k, v in request.headers.items()},
                               request.content))
        if not self._queue:
            return httpx.Response(599, text="no scripted reply left")
        r = self._queue.popleft()
        return httpx.Response(r.status, headers=[("content-type", r.content_type), *r.headers],
                              content=r.body)

    # -- clients

    def _options(self, model: str, options: dict[str, Any]) -> dict[str, Any]:
        provider = model.split("/", 1)[0]
        options.setdefault("api_key", KEYS[provider])
        options.setdefault("clock", FakeClock())
        if self.server is not None:
            options["base_url"] = self.server.url + BASE_PATH[provider]
        return options

    @asynccontextmanager
    async def client(self, model: str, **options: Any) -> AsyncIterator[AiClient]:
        options = self._options(model, options)
        http = (httpx.AsyncClient(transport=httpx.MockTransport(self._handle))
                if self.server is None else None)
        if self.kind == "aiohttp":  # the optional transport, over the same loopback server
            options["transport"] = "aiohttp"
        client = await AiClient.create(model, http_client=http, **options)
        try:
            yield client
        finally:
            await client.aclose()
            if http is not None:
                await http.aclose()

    @contextmanager
    def sync_client(self, model: str, **options: Any) -> Iterator[SyncAiClient]:
        options = self._options(model, options)
        http = (httpx.Client(transport=httpx.MockTransport(self._handle))
                if self.server is None else None)
        client = SyncAiClient.create(model, http_client=http, **options)
        try:
            yield client
        finally:
            client.close()
            if http is not None:
                http.close()


@pytest.fixture(params=["mock", "loopback", "aiohttp"])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
    if request.param == "mock":
        yield Wire("mock")
        return
    with ReplayServer() as server:
        yield Wire(str(request.param), server)


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the keys a test passes may reach the wire."""
    for name in ENV_KEYS:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- request checks


def model_name(provider: str, model: str | None = None) -> str:
    return (model or MODELS[provider]).split("/", 1)[1]


def check_request(wire: Wire, provider: str, sent: Sent, *, model: str | None = None,
                  key: str | None = None) -> None:
    """Method, full URL and the headers that matter, for one provider."""
    key = key if key is not None else KEYS[provider]
    headers = sent.headers
    assert sent.method == "POST"
    assert sent.url == wire.url(provider, model_name(provider, model))
    assert headers["content-type"] == "application/json"
    if provider in ("openai", "deepseek") or (provider == "ollama" and key):
        assert headers["authorization"] == f"Bearer {key}"
    else:
        assert "authorization" not in headers
    if provider == "anthropic":
        assert headers["x-api-key"] == key
        assert headers["anthropic-version"] == "2023-06-01"
    else:
        assert "x-api-key" not in headers
        assert "anthropic-version" not in headers
    if provider == "gemini":
        assert headers["x-goog-api-key"] == key
    else:
        assert "x-goog-api-key" not in headers
    if key:
        assert key not in sent.url


def _nulls(value: Any, path: str = "$") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def body_of(provider: str, sent: Sent, *, default_max_tokens: bool = False) -> dict[str, Any]:
    """The sent JSON body, checked for nulls and reduced to one canonical form.

    * no value anywhere may be ``null``: an unset field is absent;
    * Anthropic requires ``max_tokens``; when the caller set none, the default must be a
      positive int within the model's real output limit (64000 for Claude Sonnet 4.5), and is
      then removed so the rest can be compared exactly;
    * an empty ``generationConfig`` (Gemini) / ``options`` (Ollama) object is the same request
      as none at all (the recorded pydantic-ai Gemini request sends ``"generationConfig":{}``);
    * OpenAI-style tool-call ``arguments`` must be a JSON *string*; it is decoded for comparison.
    """
    body = sent.json()
    assert isinstance(body, dict)
    assert _nulls(body) == [], f"null values in the request body: {_nulls(body)}"
    if provider == "anthropic" and default_max_tokens:
        max_tokens = body.pop("max_tokens", None)
        assert isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
        assert 1 <= max_tokens <= 64000
    if provider == "gemini" and body.get("generationConfig") == {}:
        del body["generationConfig"]
    if provider == "ollama" and body.get("options") == {}:
        del body["options"]
    if provider in ("openai", "deepseek"):
        for message in body.get("messages", []):
            for call in message.get("tool_calls", []):
                arguments = call["function"]["arguments"]
                assert isinstance(arguments, str), "OpenAI tool-call arguments are a JSON string"
                call["function"]["arguments"] = json.loads(arguments)
    return body


def text_body(provider: str, turns: list[tuple[str, str]], *, system: str | None = SYSTEM,
              model: str | None = None) -> dict[str, Any]:
    """The expected body of a plain-text conversation (``turns`` excludes the system prompt)."""
    name = model_name(provider, model)
    if provider in ("openai", "deepseek", "ollama"):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": role, "content": text} for role, text in turns]
        body: dict[str, Any] = {"model": name, "messages": messages}
        if provider == "ollama":
            body["stream"] = False
        return body
    if provider == "anthropic":
        body = {"model": name,
                "messages": [{"role": role, "content": [{"type": "text", "text": text}]}
                             for role, text in turns]}
        if system:
            body["system"] = system
        return body
    assert provider == "gemini"
    body = {"contents": [{"role": "model" if role == "assistant" else "user",
                          "parts": [{"text": text}]} for role, text in turns]}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    return body


# --------------------------------------------------------------------------- expected answers

TEXT_ANSWER = {
    "openai": dict(
        content="The temperature in Tokyo is currently 20.0 degrees Celsius.", thinking=None,
        usage=Usage(75, 15, 90, cached_tokens=0, reasoning_tokens=0)),
    "anthropic": dict(
        content="Hello! I'm doing well, thanks for asking. How are you doing today? Is there "
                "anything I can help you with?", thinking=None,
        # no total in Anthropic usage: computed as input + output
        usage=Usage(12, 29, 41, cached_tokens=0, reasoning_tokens=None, cache_write_tokens=0)),
    "gemini": dict(
        content="There are **3** r's in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y.",
        thinking=None,
        # completion = candidates 28 + thoughts 244; total is the provider's totalTokenCount
        usage=Usage(9, 272, 281, cached_tokens=None, reasoning_tokens=244)),
    "deepseek": dict(
        content="There are **3** \u201cr\u201ds in **\u201cstrawberry\u201d**.",
        thinking=data("deepseek_chat_reasoner_text.json")["choices"][0]["message"][
            "reasoning_content"],
        usage=Usage(97, 131, 228, cached_tokens=0, reasoning_tokens=113)),
    "ollama": dict(
        content='{"age": 22, "available": false}', thinking=None,
        # no total in Ollama: computed as prompt_eval_count + eval_count
        usage=Usage(34, 12, 46, cached_tokens=None, reasoning_tokens=None)),
}


def check_text_answer(provider: str, resp: Any, model: str | None = None) -> None:
    expected = TEXT_ANSWER[provider]
    assert resp.content == expected["content"]
    assert resp.thinking == expected["thinking"]
    assert resp.tool_calls == []
    assert resp.finish_reason == "stop"
    assert resp.usage == expected["usage"]
    assert resp.raw == data(TEXT_REPLY[provider])
    assert resp.provider == provider
    assert resp.model == model_name(provider, model)


# =========================================================================== 1. text chat


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_chat_system_and_user(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        resp = await client.chat().system(SYSTEM).user(USER).execute()

    [sent] = wire.sent
    check_request(wire, provider, sent)
    body = body_of(provider, sent, default_max_tokens=True)
    expected = {
        # system inline as the first message; model id without the "openai/" prefix
        "openai": {"model": "gpt-4o", "messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]},
        # system is top-level, never a message; anthropic-version header checked above
        "anthropic": {"model": "claude-sonnet-4-5-20250929", "system": SYSTEM, "messages": [
            {"role": "user", "content": [{"type": "text", "text": USER}]}]},
        # systemInstruction; the model is in the URL path, not the body
        "gemini": {"systemInstruction": {"parts": [{"text": SYSTEM}]},
                   "contents": [{"role": "user", "parts": [{"text": USER}]}]},
        "deepseek": {"model": "deepseek-chat", "messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]},
        # Ollama streams by default: a plain call must say stream: false
        "ollama": {"model": "llama3.2", "stream": False, "messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]},
    }[provider]
    assert body == expected
    if provider == "anthropic":
        assert all(m["role"] in ("user", "assistant") for m in body["messages"])
    check_text_answer(provider, resp)


async def test_gemini_model_is_substituted_into_the_url(wire: Wire) -> None:
    wire.enqueue(reply("gemini_generate_max_tokens.json"))
    async with wire.client("gemini/gemini-2.0-flash") as client:
        await client.chat().user("hi").execute()
    [sent] = wire.sent
    origin = REAL_ORIGIN["gemini"] if wire.server is None else wire.server.url
    assert sent.url == origin + "/v1beta/models/gemini-2.0-flash:generateContent"
    check_request(wire, "gemini", sent, model="gemini/gemini-2.0-flash")


async def test_ollama_cloud_key_is_sent_as_bearer(wire: Wire) -> None:
    wire.enqueue(reply("ollama_chat_text.json"))
    async with wire.client("ollama/llama3.1", api_key=OLLAMA_CLOUD_KEY) as client:
        resp = await client.chat().user(USER).execute()
    [sent] = wire.sent
    check_request(wire, "ollama", sent, model="ollama/llama3.1", key=OLLAMA_CLOUD_KEY)
    assert body_of("ollama", sent) == text_body("ollama", [("user", USER)], system=None,
                                                model="ollama/llama3.1")
    check_text_answer("ollama", resp, model="ollama/llama3.1")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_chat_with_stats(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        resp, stats = await client.chat().user(USER).execute_with_stats()
    assert len(wire.sent) == 1
    assert body_of(provider, wire.sent[0], default_max_tokens=True) == text_body(
        provider, [("user", USER)], system=None)
    assert stats.attempts == 1
    assert stats.provider == provider and stats.model == model_name(provider)
    usage = resp.usage
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    assert (stats.cached_tokens, stats.reasoning_tokens) == (usage.cached_tokens,
                                                             usage.reasoning_tokens)
    assert stats.latency_ms == 0.0  # the fake clock never moved


# =========================================================================== 2. multi-turn

TURNS = [
    ("user", "Hi, who wrote Hamlet?"),
    ("assistant", "William Shakespeare."),
    ("user", "And when was it written?"),
]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_multi_turn_builder(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        chat = client.chat().system(SYSTEM)
        for role, text in TURNS:
            chat = chat.user(text) if role == "user" else chat.assistant(text)
        resp = await chat.execute()
    [sent] = wire.sent
    check_request(wire, provider, sent)
    assert body_of(provider, sent, default_max_tokens=True) == text_body(provider, TURNS)
    check_text_answer(provider, resp)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_multi_turn_message_list(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    history = [Message.system(SYSTEM), Message.user(TURNS[0][1]), Message.assistant(TURNS[1][1]),
               {"role": "user", "content": TURNS[2][1]}]  # OpenAI-style dicts are accepted too
    async with wire.client(MODELS[provider]) as client:
        resp = await client.chat().messages(history).execute()
    [sent] = wire.sent
    body = body_of(provider, sent, default_max_tokens=True)
    assert body == text_body(provider, TURNS)
    if provider == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    if provider == "anthropic":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    check_text_answer(provider, resp)


# =========================================================================== 3. parameters

PARAMS_EXPECTED = {
    "openai": {"temperature": 0.7, "max_tokens": 200, "top_p": 0.9, "stop": ["END"]},
    "deepseek": {"temperature": 0.7, "max_tokens": 200, "top_p": 0.9, "stop": ["END"]},
    "anthropic": {"temperature": 0.7, "max_tokens": 200, "top_p": 0.9, "stop_sequences": ["END"]},
    "gemini": {"generationConfig": {"temperature": 0.7, "maxOutputTokens": 200, "topP": 0.9,
                                    "stopSequences": ["END"]}},
    "ollama": {"options": {"temperature": 0.7, "num_predict": 200, "top_p": 0.9,
                           "stop": ["END"]}},
}
# Claude Sonnet 4.5 refuses temperature together with top_p, so the four-parameter mapping is
# checked on a Claude model that accepts both.
PARAMS_MODEL = {**MODELS, "anthropic": "anthropic/claude-3-7-sonnet-20250219"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sampling_parameters_are_renamed_per_provider(wire: Wire, provider: str) -> None:
    model = PARAMS_MODEL[provider]
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(model) as client:
        resp = await (client.chat().user(USER).temperature(0.7).max_tokens(200).top_p(0.9)
                      .stop(["END"]).execute())
    [sent] = wire.sent
    check_request(wire, provider, sent, model=model)
    expected = text_body(provider, [("user", USER)], system=None, model=model)
    expected.update(PARAMS_EXPECTED[provider])
    assert body_of(provider, sent) == expected
    check_text_answer(provider, resp, model=model)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_single_stop_string_is_sent_as_a_list(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        await client.chat().user(USER).stop("STOP").execute()
    body = body_of(provider, wire.sent[0], default_max_tokens=True)
    stops = {"openai": lambda b: b["stop"], "deepseek": lambda b: b["stop"],
             "anthropic": lambda b: b["stop_sequences"],
             "gemini": lambda b: b["generationConfig"]["stopSequences"],
             "ollama": lambda b: b["options"]["stop"]}[provider](body)
    assert stops == ["STOP"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unset_parameters_are_absent_not_null(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        await client.chat().user(USER).temperature(0).execute()  # 0 is a value, not "unset"
    body = body_of(provider, wire.sent[0], default_max_tokens=True)  # also: no nulls anywhere
    expected = text_body(provider, [("user", USER)], system=None)
    expected.update({"gemini": {"generationConfig": {"temperature": 0}},
                     "ollama": {"options": {"temperature": 0}}}.get(provider, {"temperature": 0}))
    assert body == expected
    flat = json.dumps(body)
    for name in ("top_p", "topP", "max_tokens", "maxOutputTokens", "num_predict", "stop",
                 "stopSequences", "stop_sequences", "seed", "tools", "tool_choice", "toolConfig"):
        assert f'"{name}"' not in flat


async def test_openai_reasoning_model_uses_max_completion_tokens(wire: Wire) -> None:
    wire.enqueue(reply("openai_chat_o3mini_text.json"))
    async with wire.client("openai/o3-mini") as client:
        resp = await client.chat().user(USER).temperature(0.7).max_tokens(200).execute()
    [sent] = wire.sent
    check_request(wire, "openai", sent, model="openai/o3-mini")
    body = body_of("openai", sent)
    # o-series: max_tokens is rejected (400 unsupported_parameter), temperature unsupported
    assert body == {"model": "o3-mini", "messages": [{"role": "user", "content": USER}],
                    "max_completion_tokens": 200}
    assert resp.content.startswith("The capital of Mexico is Mexico City.")
    assert resp.finish_reason == "stop"
    assert resp.usage == Usage(13, 238, 251, cached_tokens=0, reasoning_tokens=192)


# =========================================================================== 4. tool calls

TOOLS_EXPECTED = {
    "openai": lambda t: {
        "tools": [{"type": "function", "function": {
            "name": t["name"], "description": t["description"], "parameters": t["parameters"]}}],
        "tool_choice": "auto"},
    "anthropic": lambda t: {
        "tools": [{"name": t["name"], "description": t["description"],
                   "input_schema": t["parameters"]}],
        "tool_choice": {"type": "auto"}},
    "gemini": lambda t: {
        "tools": [{"functionDeclarations": [{"name": t["name"], "description": t["description"],
                                             "parameters": t["parameters"]}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
    "ollama": lambda t: {  # Ollama has no tool_choice; "auto" is its only behaviour
        "tools": [{"type": "function", "function": {
            "name": t["name"], "description": t["description"], "parameters": t["parameters"]}}]},
}
TOOLS_EXPECTED["deepseek"] = TOOLS_EXPECTED["openai"]

# (id or None when the provider gives none, name, arguments, content, thinking, usage)
TOOL_ANSWER: dict[str, tuple[str | None, str, dict[str, Any], str, str | None, Usage]] = {
    "openai": ("call_rtFKwAIteZdMYlGvskQUU6Ao", "get_temperature", {"city": "Tokyo"}, "", None,
               Usage(50, 15, 65, cached_tokens=0, reasoning_tokens=0)),
    "anthropic": ("toolu_011GReSD6Lexm9Bs3tXwTC7L", "getWeather", {"city": "Tokyo"}, "", None,
                  Usage(833, 24, 857, cached_tokens=0, cache_write_tokens=0)),
    "gemini": (None, "weather", {"location": "San Francisco"}, "", None,
               Usage(29, 15 + 893, 937, reasoning_tokens=893)),
    "deepseek": ("call_00_9V0vrf86Pc9aelHCJMZqnJBo", "weather", {"location": "San Francisco"},
                 "", data("deepseek_chat_tool_call.json")["choices"][0]["message"][
                     "reasoning_content"],
                 Usage(339, 92, 431, cached_tokens=320, reasoning_tokens=48)),
    "ollama": (None, "get_weather", {"city": "Tokyo"}, "", None, Usage(169, 18, 187)),
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_definitions_and_tool_call_response(wire: Wire, provider: str) -> None:
    tool = TOOLS[provider]
    wire.enqueue(reply(TOOL_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        resp = await (client.chat().system(SYSTEM).user(USER).tools([tool]).tool_choice("auto")
                      .execute())
    [sent] = wire.sent
    check_request(wire, provider, sent)
    expected = text_body(provider, [("user", USER)])
    expected.update(TOOLS_EXPECTED[provider](tool))
    assert body_of(provider, sent, default_max_tokens=True) == expected

    call_id, name, arguments, content, thinking, usage = TOOL_ANSWER[provider]
    assert len(resp.tool_calls) == 1
    [call] = resp.tool_calls
    assert isinstance(call, ToolCall)
    assert (call.name, call.arguments) == (name, arguments)
    if call_id is None:  # Gemini / Ollama give no id: the engine must make one up
        assert isinstance(call.id, str) and call.id.strip()
    else:
        assert call.id == call_id
    # Gemini says STOP and Ollama says stop even for a tool call: normalized to tool_calls
    assert resp.finish_reason == "tool_calls"
    assert resp.content == content
    assert resp.thinking == thinking
    assert resp.usage == usage


async def test_synthesized_tool_call_ids_are_distinct_per_call(wire: Wire) -> None:
    wire.enqueue(reply("gemini_generate_tool_call.json"), reply("gemini_generate_tool_call.json"))
    async with wire.client(MODELS["gemini"]) as client:
        first = await client.chat().user(USER).tools([TOOLS["gemini"]]).execute()
        second = await client.chat().user(USER).tools([TOOLS["gemini"]]).execute()
    assert first.tool_calls[0].id != second.tool_calls[0].id


TOOL_CHOICES = {
    "openai": {"none": "none", "required": "required",
               "named": {"type": "function", "function": {"name": "get_temperature"}}},
    "deepseek": {"none": "none", "required": "required",
                 "named": {"type": "function", "function": {"name": "weather"}}},
    "anthropic": {"none": {"type": "none"}, "required": {"type": "any"},
                  "named": {"type": "tool", "name": "getWeather"}},
    "gemini": {"none": {"functionCallingConfig": {"mode": "NONE"}},
               "required": {"functionCallingConfig": {"mode": "ANY"}},
               "named": {"functionCallingConfig": {"mode": "ANY",
                                                   "allowedFunctionNames": ["weather"]}}},
}


@pytest.mark.parametrize("choice", ["none", "required", "named"])
@pytest.mark.parametrize("provider", ["openai", "deepseek", "anthropic", "gemini"])
async def test_tool_choice_variants(wire: Wire, provider: str, choice: str) -> None:
    tool = TOOLS[provider]
    value: Any = {"name": tool["name"]} if choice == "named" else choice
    wire.enqueue(reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        await client.chat().user(USER).tools([tool]).tool_choice(value).execute()
    body = body_of(provider, wire.sent[0], default_max_tokens=True)
    key = "toolConfig" if provider == "gemini" else "tool_choice"
    assert body[key] == TOOL_CHOICES[provider][choice]


# =========================================================================== 5. tool results

RESULT = "20.0 degrees Celsius, clear sky"


def tool_turns(provider: str, call: ToolCall, result: str) -> dict[str, Any]:
    """Expected body of [system, user, assistant(tool call), tool result] in provider shape."""
    if provider in ("openai", "deepseek"):
        return {"model": model_name(provider), "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER},
            # OpenAI: content may be omitted on a tool-call turn (the recorded pydantic-ai
            # request omits it); DeepSeek rejects a turn without it (422 missing field
            # `content`, pig-mesh/deepseek4j#41). Arguments travel as a JSON string.
            {"role": "assistant", **({"content": ""} if provider == "deepseek" else {}),
             "tool_calls": [{"id": call.id, "type": "function", "function": {
                 "name": call.name, "arguments": call.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]}
    if provider == "anthropic":
        return {"model": model_name(provider), "system": SYSTEM, "messages": [
            {"role": "user", "content": [{"type": "text", "text": USER}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}]},
            # a tool result is a tool_result block inside a USER turn
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": result}]},
        ]}
    if provider == "gemini":
        return {"systemInstruction": {"parts": [{"text": SYSTEM}]}, "contents": [
            {"role": "user", "parts": [{"text": USER}]},
            # the call goes back with the thoughtSignature it came with (the recorded
            # google-tool-call.json carries one on the functionCall part)
            {"role": "model", "parts": [{"functionCall": {"name": call.name,
                                                          "args": call.arguments},
                                         **({"thoughtSignature": call.extra["thoughtSignature"]}
                                            if "thoughtSignature" in call.extra else {})}]},
            # the function NAME is resolved from the earlier call; response is an object
            {"role": "user", "parts": [{"functionResponse": {"name": call.name,
                                                             "response": {"result": result}}}]},
        ]}
    assert provider == "ollama"
    return {"model": model_name(provider), "stream": False, "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "content": result, "tool_name": call.name},
    ]}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_call_round_trip(wire: Wire, provider: str) -> None:
    """Ask, receive a (real) tool call, send the result back, receive the answer."""
    tool = TOOLS[provider]
    wire.enqueue(reply(TOOL_REPLY[provider]), reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider]) as client:
        first = await client.chat().system(SYSTEM).user(USER).tools([tool]).execute()
        [call] = first.tool_calls
        final = await (client.chat().system(SYSTEM).user(USER)
                       .assistant(first.content, tool_calls=first.tool_calls)
                       .tool(call.id, RESULT).tools([tool]).execute())
    _first_sent, second_sent = wire.sent
    check_request(wire, provider, second_sent)
    expected = tool_turns(provider, call, RESULT)
    tools = TOOLS_EXPECTED[provider](tool)
    tools.pop("tool_choice", None)
    tools.pop("toolConfig", None)
    expected.update(tools)
    assert body_of(provider, second_sent, default_max_tokens=True) == expected
    check_text_answer(provider, final)


CALL_A = ToolCall("call_weather_1", "get_weather", {"city": "Paris"})
CALL_B = ToolCall("call_time_2", "get_time", {"timezone": "Europe/Paris"})


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_tool_results(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    history = [
        Message.user("Weather and time in Paris?"),
        Message.assistant("", tool_calls=[CALL_A, {"id": CALL_B.id, "name": CALL_B.name,
                                                   "arguments": json.dumps(CALL_B.arguments)}]),
        Message.tool(CALL_A.id, "18C and sunny"),
        Message.tool(CALL_B.id, {"time": "14:05"}),  # non-string results are sent as JSON
    ]
    async with wire.client(MODELS[provider]) as client:
        resp = await client.chat().messages(history).execute()
    body = body_of(provider, wire.sent[0], default_max_tokens=True)
    time_json = json.dumps({"time": "14:05"})
    if provider in ("openai", "deepseek"):
        assert body["messages"] == [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", **({"content": ""} if provider == "deepseek" else {}),
             "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in (CALL_A, CALL_B)]},
            {"role": "tool", "tool_call_id": CALL_A.id, "content": "18C and sunny"},
            {"role": "tool", "tool_call_id": CALL_B.id, "content": time_json},
        ]
    elif provider == "anthropic":
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in (CALL_A, CALL_B)]},
            # consecutive tool results merged into ONE user turn
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": CALL_A.id, "content": "18C and sunny"},
                {"type": "tool_result", "tool_use_id": CALL_B.id, "content": time_json}]},
        ]
    elif provider == "gemini":
        assert body["contents"] == [
            {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": c.name, "args": c.arguments}}
                for c in (CALL_A, CALL_B)]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather",
                                      "response": {"result": "18C and sunny"}}},
                # a JSON-object result is sent as that object
                {"functionResponse": {"name": "get_time", "response": {"time": "14:05"}}}]},
        ]
    else:
        assert body["messages"] == [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": c.name, "arguments": c.arguments}}
                for c in (CALL_A, CALL_B)]},
            {"role": "tool", "content": "18C and sunny", "tool_name": "get_weather"},
            {"role": "tool", "content": time_json, "tool_name": "get_time"},
        ]
    check_text_answer(provider, resp)


async def test_anthropic_user_text_after_tool_results_joins_the_same_user_turn(
        wire: Wire) -> None:
    wire.enqueue(reply("anthropic_messages_text.json"))
    async with wire.client(MODELS["anthropic"]) as client:
        await (client.chat().user("Weather in Paris?").assistant("Let me check.",
                                                                 tool_calls=[CALL_A])
               .tool(CALL_A.id, "18C").user("Thanks, and in French?").execute())
    body = body_of("anthropic", wire.sent[0], default_max_tokens=True)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": CALL_A.id, "name": "get_weather",
             "input": {"city": "Paris"}}]},
        # strict alternation: tool_result first, then the user's text, in one user turn
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": CALL_A.id, "content": "18C"},
            {"type": "text", "text": "Thanks, and in French?"}]},
    ]


# =========================================================================== 6. errors

# provider, reply file, status, extra headers, kind, retryable, retry_after, message fragment
ERRORS = [
    ("openai", "openai_error_401_invalid_api_key.json", 401, (), "authentication", False, None,
     "Incorrect API key provided"),
    ("openai", "openai_error_429_rate_limit_exceeded.json", 429, (("retry-after", "20"),),
     "rate_limited", True, 20.0, "Rate limit reached for gpt-4o"),
    ("openai", "openai_error_429_insufficient_quota.json", 429, (), "quota_exhausted", False,
     None, "You exceeded your current quota"),
    ("openai", "openai_error_404_model_not_found.json", 404, (), "not_found", False, None,
     "The model `gpt-5.2-proo` does not exist"),
    ("openai", "openai_error_400_context_length_exceeded.json", 400, (),
     "context_length_exceeded", False, None, "maximum context length is 128000 tokens"),
    ("openai", "openai_error_400_unsupported_parameter.json", 400, (), "invalid_request", False,
     None, "Unsupported parameter: 'max_tokens'"),
    ("openai", "openai_error_503_server_error.json", 503, (), "overloaded", True, None,
     "The server is overloaded"),
    ("anthropic", "anthropic_error_529_overloaded.json", 529, (), "overloaded", True, None,
     "Overloaded"),
    ("anthropic", "anthropic_error_401_authentication.json", 401, (), "authentication", False,
     None, "invalid x-api-key"),
    ("anthropic", "anthropic_error_404_not_found.json", 404, (), "not_found", False, None,
     "model: claude-sonet-4-5"),
    ("anthropic", "anthropic_error_429_rate_limit.json", 429, (("retry-after", "12"),),
     "rate_limited", True, 12.0, "per-minute rate limit"),
    ("gemini", "gemini_error_400_api_key_invalid.json", 400, (), "authentication", False, None,
     "API key not valid"),
    ("gemini", "gemini_error_429_resource_exhausted.json", 429, (), "rate_limited", True, 34.4,
     "You exceeded your current quota"),
    ("gemini", "gemini_error_503_unavailable.json", 503, (), "overloaded", True, None,
     "The model is overloaded"),
    ("gemini", "gemini_error_404_not_found.json", 404, (), "not_found", False, None,
     "models/gemini-3.6-flahs is not found"),
    ("deepseek", "deepseek_error_402_insufficient_balance.json", 402, (), "quota_exhausted",
     False, None, "Insufficient Balance"),
    ("deepseek", "deepseek_error_401_authentication.json", 401, (), "authentication", False,
     None, "Authentication Fails"),
    ("ollama", "ollama_error_404_model_not_found.json", 404, (), "not_found", False, None,
     "model 'llama3' not found"),
    ("ollama", "ollama_error_503_server_busy.json", 503, (), "overloaded", True, None,
     "server busy"),
]


def _error_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}-{case[2]}-{case[4]}"


@pytest.mark.parametrize("case", ERRORS, ids=[_error_id(c) for c in ERRORS])
async def test_error_bodies_are_classified(wire: Wire, case: tuple[Any, ...]) -> None:
    provider, name, status, headers, kind, retryable, retry_after, fragment = case
    wire.enqueue(reply(name, status, headers))
    async with wire.client(MODELS[provider], max_retries=0) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    error = info.value
    assert (error.kind, error.status, error.provider) == (kind, status, provider)
    assert error.retryable is retryable
    assert error.retry_after == retry_after
    assert fragment in error.message
    assert len(wire.sent) == 1
    if provider == "ollama":
        assert error.message == data(name)["error"]
    for key in filter(None, KEYS.values()):
        assert key not in str(error) and key not in repr(error)


async def test_openai_retry_hint_in_message_when_no_header(wire: Wire) -> None:
    wire.enqueue(reply("openai_error_429_rate_limit_exceeded.json", 429))
    async with wire.client(MODELS["openai"], max_retries=0) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert info.value.kind == "rate_limited"
    assert info.value.retry_after == 2.0  # "Please try again in 2s."


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_html_502_page_is_a_server_error(wire: Wire, provider: str) -> None:
    wire.enqueue(reply("proxy_502_bad_gateway.html", 502))
    async with wire.client(MODELS[provider], max_retries=0) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    error = info.value
    assert (error.kind, error.status, error.provider) == ("server_error", 502, provider)
    assert error.retryable is True
    assert "502 Bad Gateway" in error.message


async def test_api_key_echoed_by_the_provider_never_appears_in_the_error(wire: Wire) -> None:
    key = KEYS["openai"]
    assert key is not None and key.encode() in (DATA / "openai_error_401_invalid_api_key.json"
                                                 ).read_bytes()
    wire.enqueue(reply("openai_error_401_invalid_api_key.json", 401))
    async with wire.client(MODELS["openai"], max_retries=0) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    error = info.value
    for text in (str(error), repr(error), error.message, str(error.code), str(error.args)):
        assert key not in text
    assert "Incorrect API key provided" in error.message


# ------------------------------------------------------------------------- retries

OVERLOADED = {
    "openai": reply("openai_error_503_server_error.json", 503),
    "anthropic": reply("anthropic_error_529_overloaded.json", 529),
    "gemini": reply("gemini_error_503_unavailable.json", 503),
    "deepseek": reply("openai_error_503_server_error.json", 503),
    "ollama": reply("ollama_error_503_server_busy.json", 503),
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_overloaded_then_success_is_retried(wire: Wire, provider: str) -> None:
    clock = FakeClock()
    wire.enqueue(OVERLOADED[provider], reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider], max_retries=2, clock=clock) as client:
        resp, stats = await client.chat().system(SYSTEM).user(USER).execute_with_stats()
    assert stats.attempts == 2
    assert len(wire.sent) == 2
    first, second = wire.sent
    assert first.body == second.body and first.url == second.url
    assert len(clock.sleeps) == 1 and 0.0 <= clock.sleeps[0] <= 60.0
    check_text_answer(provider, resp)


AUTH_ERRORS = {
    "openai": reply("openai_error_401_invalid_api_key.json", 401),
    "anthropic": reply("anthropic_error_401_authentication.json", 401),
    "gemini": reply("gemini_error_400_api_key_invalid.json", 400),
    "deepseek": reply("deepseek_error_401_authentication.json", 401),
}


@pytest.mark.parametrize("provider", list(AUTH_ERRORS))
async def test_authentication_errors_are_never_retried(wire: Wire, provider: str) -> None:
    clock = FakeClock()
    wire.enqueue(AUTH_ERRORS[provider], reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider], max_retries=3, clock=clock) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert info.value.kind == "authentication"
    assert len(wire.sent) == 1
    assert clock.sleeps == []


async def test_insufficient_quota_is_never_retried(wire: Wire) -> None:
    clock = FakeClock()
    wire.enqueue(reply("openai_error_429_insufficient_quota.json", 429, (("retry-after", "1"),)),
                 reply("openai_chat_text.json"))
    async with wire.client(MODELS["openai"], max_retries=3, clock=clock) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert info.value.kind == "quota_exhausted"
    assert len(wire.sent) == 1 and clock.sleeps == []


RATE_LIMITS = [
    ("openai", reply("openai_error_429_rate_limit_exceeded.json", 429, (("retry-after", "3"),)),
     3.0),
    ("anthropic", reply("anthropic_error_429_rate_limit.json", 429, (("retry-after", "7"),)), 7.0),
    ("gemini", reply("gemini_error_429_resource_exhausted.json", 429), 34.4),  # body RetryInfo
]


@pytest.mark.parametrize(("provider", "limited", "delay"), RATE_LIMITS,
                         ids=[c[0] for c in RATE_LIMITS])
async def test_rate_limit_retry_waits_as_told(wire: Wire, provider: str, limited: Reply,
                                              delay: float) -> None:
    clock = FakeClock()
    wire.enqueue(limited, reply(TEXT_REPLY[provider]))
    async with wire.client(MODELS[provider], max_retries=2, clock=clock) as client:
        resp, stats = await client.chat().user(USER).execute_with_stats()
    assert clock.sleeps == [delay]
    assert stats.attempts == 2 and len(wire.sent) == 2
    assert resp.finish_reason == "stop"


async def test_anthropic_x_should_retry_false_is_obeyed(wire: Wire) -> None:
    clock = FakeClock()
    overloaded = OVERLOADED["anthropic"]
    wire.enqueue(Reply(overloaded.status, overloaded.body, overloaded.content_type,
                       (("x-should-retry", "false"),)),
                 reply("anthropic_messages_text.json"))
    async with wire.client(MODELS["anthropic"], max_retries=2, clock=clock) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert info.value.kind == "overloaded" and info.value.retryable is False
    assert len(wire.sent) == 1 and clock.sleeps == []


async def test_retry_after_beyond_the_cap_gives_up_at_once(wire: Wire) -> None:
    clock = FakeClock()
    hour = (("retry-after", "3600"),)
    wire.enqueue(reply("openai_error_429_rate_limit_exceeded.json", 429, hour),
                 reply("openai_chat_text.json"))
    async with wire.client(MODELS["openai"], max_retries=2, clock=clock) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert (info.value.kind, info.value.retry_after) == ("rate_limited", 3600.0)
    assert len(wire.sent) == 1 and clock.sleeps == []


async def test_retries_give_up_after_max_retries(wire: Wire) -> None:
    clock = FakeClock()
    wire.enqueue(*[OVERLOADED["anthropic"]] * 3, reply("anthropic_messages_text.json"))
    async with wire.client(MODELS["anthropic"], max_retries=2, clock=clock) as client:
        with pytest.raises(EngineError) as info:
            await client.chat().user(USER).execute()
    assert info.value.kind == "overloaded"
    assert info.value.attempts == 3
    assert len(wire.sent) == 3 and len(clock.sleeps) == 2


# =========================================================================== 7. usage


async def test_anthropic_prompt_tokens_include_cache_reads_and_writes(wire: Wire) -> None:
    wire.enqueue(reply("anthropic_messages_cache_usage.json"))
    async with wire.client(MODELS["anthropic"]) as client:
        resp, stats = await client.chat().system(SYSTEM).user(USER).execute_with_stats()
    # input 3 + cache_read 1111 + cache_creation 403; output 33; no total field: computed
    assert resp.usage == Usage(1517, 33, 1550, cached_tokens=1111, reasoning_tokens=None,
                               cache_write_tokens=403)
    assert (stats.prompt_tokens, stats.cached_tokens) == (1517, 1111)
    assert resp.content.startswith("Python is a beginner-friendly")
    assert resp.finish_reason == "stop"


async def test_gemini_max_tokens_finish_and_usage(wire: Wire) -> None:
    wire.enqueue(reply("gemini_generate_max_tokens.json"))
    async with wire.client(MODELS["gemini"]) as client:
        resp = await client.chat().user(USER).max_tokens(5).execute()
    assert body_of("gemini", wire.sent[0])["generationConfig"] == {"maxOutputTokens": 5}
    assert resp.content == "The capital of France is"
    assert resp.finish_reason == "length"
    assert resp.usage == Usage(15, 5, 20, cached_tokens=None, reasoning_tokens=None)


async def test_deepseek_reasoning_content_is_thinking(wire: Wire) -> None:
    wire.enqueue(reply("deepseek_chat_reasoner_text.json"))
    async with wire.client("deepseek/deepseek-reasoner") as client:
        resp = await client.chat().user(USER).execute()
    assert resp.thinking is not None and resp.thinking.startswith("We need answer simple.")
    assert "reasoning_content" not in json.dumps(body_of("deepseek", wire.sent[0]))
    assert resp.usage.reasoning_tokens == 113


async def test_gemini_thought_parts_are_thinking_not_content(wire: Wire) -> None:
    body = data("gemini_generate_thoughts.json")
    thought, answer = body["candidates"][0]["content"]["parts"]
    wire.enqueue(reply("gemini_generate_thoughts.json"))
    async with wire.client("gemini/gemini-2.5-pro") as client:
        resp = await client.chat().user("How do I cross the street safely?").execute()
    assert resp.thinking == thought["text"]
    assert resp.content == answer["text"]
    assert resp.finish_reason == "stop"
    # candidates 469 + thoughts 787; total from totalTokenCount
    assert resp.usage == Usage(34, 469 + 787, 1290, cached_tokens=None, reasoning_tokens=787)


async def test_deepseek_body_after_keep_alive_blank_lines(wire: Wire) -> None:
    """While a request is queued DeepSeek sends blank lines before the JSON body."""
    text = reply("deepseek_chat_reasoner_text.json")
    wire.enqueue(Reply(200, b"\n\n\n" + text.body, text.content_type))
    async with wire.client(MODELS["deepseek"]) as client:
        resp = await client.chat().system(SYSTEM).user(USER).execute()
    check_text_answer("deepseek", resp)


# =========================================================================== sync client


@pytest.mark.parametrize("provider", PROVIDERS)
def test_sync_client_text_chat(wire: Wire, provider: str) -> None:
    wire.enqueue(reply(TEXT_REPLY[provider]))
    with wire.sync_client(MODELS[provider]) as client:
        resp, stats = client.chat().system(SYSTEM).user(USER).execute_with_stats()
    [sent] = wire.sent
    check_request(wire, provider, sent)
    assert body_of(provider, sent, default_max_tokens=True) == text_body(provider,
                                                                         [("user", USER)])
    assert stats.attempts == 1
    check_text_answer(provider, resp)


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_sync_client_tool_round_trip(wire: Wire, provider: str) -> None:
    tool = TOOLS[provider]
    wire.enqueue(reply(TOOL_REPLY[provider]), reply(TEXT_REPLY[provider]))
    with wire.sync_client(MODELS[provider]) as client:
        first = client.chat().system(SYSTEM).user(USER).tools([tool]).execute()
        [call] = first.tool_calls
        final = (client.chat().system(SYSTEM).user(USER).assistant("", tool_calls=[call])
                 .tool(call.id, RESULT).execute())
    expected = tool_turns(provider, call, RESULT)
    assert body_of(provider, wire.sent[1], default_max_tokens=True) == expected
    check_text_answer(provider, final)


def test_sync_client_retries_with_the_blocking_clock(wire: Wire) -> None:
    clock = FakeClock()
    wire.enqueue(reply("anthropic_error_429_rate_limit.json", 429, (("retry-after", "5"),)),
                 reply("anthropic_messages_text.json"))
    with wire.sync_client(MODELS["anthropic"], max_retries=1, clock=clock) as client:
        resp, stats = client.chat().user(USER).execute_with_stats()
    assert clock.sleeps == [5.0]
    assert stats.attempts == 2 and len(wire.sent) == 2
    check_text_answer("anthropic", resp)


def test_sync_client_error_is_classified(wire: Wire) -> None:
    wire.enqueue(reply("ollama_error_404_model_not_found.json", 404))
    with wire.sync_client("ollama/llama3", max_retries=0) as client, \
            pytest.raises(EngineError) as info:
        client.chat().user(USER).execute()
    assert (info.value.kind, info.value.status) == ("not_found", 404)
    assert info.value.message == "model 'llama3' not found"


def test_body_helper_does_not_mutate_its_input() -> None:
    """Guard for the helpers: body_of must not mutate what the test compares against."""
    original = {"messages": [{"role": "assistant", "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}
    sent = Sent("POST", "http://x", {}, json.dumps(original).encode())
    snapshot = copy.deepcopy(original)
    assert body_of("openai", sent)["messages"][0]["tool_calls"][0]["function"]["arguments"] == {}
    assert original == snapshot
