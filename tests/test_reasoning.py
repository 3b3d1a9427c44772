"""chat.reasoning(...): one call, each provider's own dialect, and refusals before sending."""

from __future__ import annotations

from typing import Any

import pytest
from test_media import ANSWERS, client

from engine import EngineError

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("provider, call, want", [
    ("openai", {"effort": "low"}, {"reasoning_effort": "low"}),
    ("anthropic", {"budget_tokens": 2048},
     {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ("anthropic", {"adaptive": True}, {"thinking": {"type": "adaptive"}}),
    ("anthropic", {"effort": "medium"}, {"output_config": {"effort": "medium"}}),
    ("gemini", {"budget_tokens": 512, "summary": "auto"},
     {"generationConfig": {"maxOutputTokens": 4096, "thinkingConfig": {
         "thinkingBudget": 512, "includeThoughts": True}}}),
    ("gemini", {"effort": "high"},
     {"generationConfig": {"maxOutputTokens": 4096, "thinkingConfig": {"thinkingLevel": "high"}}}),
    ("gemini", {"effort": "none"},
     {"generationConfig": {"maxOutputTokens": 4096, "thinkingConfig": {"thinkingBudget": 0}}}),
    ("ollama", {"effort": "high"}, {"think": "high"}),
    ("ollama", {"effort": "none"}, {"think": False}),
    ("ollama", {"effort": "minimal"}, {"think": True}),
])
def test_each_family_gets_its_own_fields(provider: str, call: dict[str, Any],
                                          want: dict[str, Any]) -> None:
    c, server = client(provider)
    c.chat().user("Think.").max_tokens(4096).reasoning(**call).execute()
    body = server.bodies[0]
    for key, value in want.items():
        assert body[key] == value, (key, body)


@pytest.mark.parametrize("model, sent", [("o4-mini", True), ("gpt-5", True),
                                         ("gpt-6.1-sol", True), ("gpt-4o-mini", False),
                                         ("gpt-4.1", False), ("gpt-4o-audio-preview", False)])
def test_openai_reasoning_effort_only_where_the_model_takes_it(model: str, sent: bool) -> None:
    c, server = client("openai", model=model)
    chat = c.chat().user("Think.").reasoning(effort="low")
    if sent:
        chat.execute()
        assert server.bodies[0]["reasoning_effort"] == "low"
        return
    with pytest.raises(EngineError) as caught:
        chat.execute()
    assert caught.value.message == (
        f"openai cannot express the reasoning control 'effort' (it offers: none) "
        f"(model {model}: openai's capabilities differ by model)")
    assert server.bodies == []


def test_without_reasoning_nothing_is_sent() -> None:
    for provider, keys in [("openai", ["reasoning_effort"]), ("anthropic", ["thinking"]),
                           ("ollama", ["think"])]:
        c, server = client(provider)
        c.chat().user("x").execute()
        assert not set(keys) & set(server.bodies[0]), provider
    c, server = client("gemini")
    c.chat().user("x").execute()
    assert "generationConfig" not in server.bodies[0]


@pytest.mark.parametrize("provider, call, why", [
    ("openai", {"budget_tokens": 100}, "openai cannot express the reasoning control "
     "'budget_tokens' (it offers: effort)"),
    ("deepseek", {"effort": "high"}, "deepseek cannot express the reasoning control 'effort' "
     "(it offers: none)"),
    ("anthropic", {"summary": "auto"}, "cannot express the reasoning control 'summary'"),
])
def test_a_control_the_provider_lacks_is_refused(provider: str, call: dict[str, Any],
                                                 why: str) -> None:
    c, server = client(provider, ANSWERS["openai"])
    with pytest.raises(EngineError) as caught:
        c.chat().user("x").reasoning(**call).execute()
    assert caught.value.kind == "invalid_request" and why in caught.value.message
    assert server.bodies == []


def test_sampling_params_the_api_refuses_with_thinking_are_refused() -> None:
    c, server = client("anthropic")
    with pytest.raises(EngineError, match=r"anthropic refuses temperature alongside reasoning"):
        c.chat().user("x").temperature(0.3).reasoning(budget_tokens=1024).execute()
    assert server.bodies == []


WEATHER = {"name": "weather", "description": "The weather.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize("choice", ["required", {"name": "weather"}])
def test_a_forced_tool_the_api_refuses_with_thinking_is_refused(choice: Any) -> None:
    c, server = client("anthropic")
    mode = "required" if choice == "required" else "tool"
    with pytest.raises(EngineError) as caught:
        c.chat().user("x").tools([WEATHER]).tool_choice(choice).reasoning(
            budget_tokens=1024).max_tokens(4096).execute()
    assert caught.value.kind == "invalid_request"
    assert caught.value.message == (f"anthropic refuses tool_choice {mode!r} alongside "
                                    f"reasoning (it takes: auto, none); drop one of them")
    assert server.bodies == []
    c.chat().user("x").tools([WEATHER]).tool_choice("auto").reasoning(
        budget_tokens=1024).max_tokens(4096).execute()
    assert server.bodies[0]["tool_choice"] == {"type": "auto"}
    assert server.bodies[0]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def _bedrock(model: str, text: str = "ok") -> tuple[Any, Any]:
    import httpx
    from test_media import Server

    from engine import SyncAiClient

    server = Server({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                     "stopReason": "end_turn",
                     "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}})
    c = SyncAiClient.create(f"bedrock/{model}", api_key="AKIDEXAMPLE:secretsecret",
                            settings={"region": "us-east-1"},
                            http_client=httpx.Client(transport=httpx.MockTransport(server)),
                            max_retries=0)
    return c, server


def test_bedrock_thinking_goes_with_a_native_schema_but_not_the_forced_tool_one() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    old, server = _bedrock("anthropic.claude-3-7-sonnet-20250219-v1:0")
    with pytest.raises(EngineError) as caught:
        old.chat().user("x").response_format(schema, name="A").reasoning(
            budget_tokens=1024).max_tokens(4096).execute()
    assert caught.value.message.startswith(
        "bedrock emulates a json_schema answer with a forced tool call, which it refuses "
        "alongside reasoning; drop .reasoning() or the answer format")
    assert server.bodies == []
    old.chat().user("x").reasoning(budget_tokens=1024).max_tokens(4096).execute()
    assert server.bodies[0]["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}}
    new, server = _bedrock("us.anthropic.claude-sonnet-4-5-20250929-v1:0", '{"a": "b"}')
    assert new.chat().user("x").response_format(schema, name="A").reasoning(
        budget_tokens=1024).max_tokens(4096).execute().parsed == {"a": "b"}
    body = server.bodies[0]
    assert body["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert "toolConfig" not in body
    assert body["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 1024
    nova, server = _bedrock("amazon.nova-pro-v1:0")
    with pytest.raises(EngineError, match="cannot express the reasoning control"):
        nova.chat().user("x").reasoning(budget_tokens=1024).max_tokens(4096).execute()
    assert server.bodies == []


@pytest.mark.parametrize("build, why", [
    (lambda chat: chat.reasoning(effort="maximum"), "did you mean"),
    (lambda chat: chat.reasoning(), "needs effort, budget_tokens, summary or adaptive"),
    (lambda chat: chat.reasoning(budget_tokens=-1), "budget_tokens must be"),
    (lambda chat: chat.reasoning(adaptive=True, budget_tokens=10), "not both"),
    (lambda chat: chat.reasoning(summary="full"), "reasoning summary must be one of"),
])
def test_bad_controls_fail_at_the_call(build: Any, why: str) -> None:
    c, _ = client("anthropic")
    with pytest.raises(EngineError, match=why):
        build(c.chat().user("x"))


def test_a_budget_at_or_over_max_tokens_is_refused() -> None:
    c, server = client("anthropic")
    with pytest.raises(EngineError, match=r"budget_tokens \(2048\) must be below max_tokens "
                       r"\(1024\)"):
        c.chat().user("x").max_tokens(1024).reasoning(budget_tokens=2048).execute()
    assert server.bodies == []


# ---------------------------------------------------------------- tool options

TOOL = {"name": "get_weather", "description": "Weather", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False}}


def test_openai_strict_tools_and_no_parallel_calls() -> None:
    c, server = client("openai")
    c.chat().user("x").tools([TOOL]).parallel_tool_calls(False).execute()
    body = server.bodies[0]
    assert body["tools"][0]["function"]["strict"] is True
    assert body["parallel_tool_calls"] is False


def test_anthropic_no_parallel_calls_rides_on_tool_choice() -> None:
    c, server = client("anthropic")
    c.chat().user("x").tools([TOOL]).parallel_tool_calls(False).execute()
    assert server.bodies[0]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    c.chat().user("x").tools([TOOL]).tool_choice("required").parallel_tool_calls(False).execute()
    assert server.bodies[1]["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    c.chat().user("x").tools([TOOL]).execute()
    assert "tool_choice" not in server.bodies[2]


def test_parallel_calls_off_is_refused_where_it_cannot_be_said() -> None:
    c, server = client("gemini")
    with pytest.raises(EngineError, match="gemini cannot turn parallel tool calls off"):
        c.chat().user("x").tools([TOOL]).parallel_tool_calls(False).execute()
    assert server.bodies == []


def test_a_non_bool_strict_is_refused() -> None:
    c, _ = client("openai")
    with pytest.raises(EngineError, match="strict must be a bool"):
        c.chat().user("x").tools([{**TOOL, "strict": "yes"}])


@pytest.mark.parametrize("model, sent", [("sonar-deep-research", True), ("sonar-pro", False),
                                         ("sonar-reasoning-pro", False)])
def test_perplexity_reasoning_effort_only_for_deep_research(model: str, sent: bool) -> None:
    c, server = client("perplexity", ANSWERS["openai"], model=model)
    chat = c.chat().user("Research.").reasoning(effort="high")
    if sent:
        chat.execute()
        assert server.bodies[0]["reasoning_effort"] == "high"
    else:
        with pytest.raises(EngineError, match="perplexity cannot express the reasoning "
                           f"control 'effort' .*model {model}"):
            chat.execute()
        assert server.bodies == []
