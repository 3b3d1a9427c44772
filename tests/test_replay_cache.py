"""Replay, prompt-cache marks, the developer role, top_k, refused params and provider tools.

Replay: an answer keeps what its provider needs back verbatim (``ChatResponse.replay``),
``to_message()`` carries it, and only that provider is sent it. Streams are fed the
recorded bytes; the expected blocks are computed from those bytes here, by a direct
walk, not by the engine's rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from decoding import Fed
from test_media import Server, client

from engine import EngineError, Message, Part, SyncAiClient, Usage
from engine.manifest.load import load_manifest
from engine.protocol.framing import make_framer
from engine.types import ChatResponse

pytestmark = pytest.mark.fast

RECORDINGS = Path(__file__).resolve().parent.parent / "conformance" / "recordings"
WEATHER = {"name": "weather", "description": "Weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def decode(provider: str, recording: str, model: str = "m") -> ChatResponse:
    fed = Fed(load_manifest(provider), model)
    data = (RECORDINGS / recording).read_bytes()
    for start in range(0, len(data), 97):  # arbitrary chunk boundaries
        fed.feed(data[start:start + 97])
    fed.close()
    assert fed.error is None, fed.error
    return fed.response


# ---------------------------------------------------------------- replay, streamed

def _sse_data(recording: str) -> list[dict[str, Any]]:
    text = (RECORDINGS / recording).read_text(encoding="utf-8")
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip().startswith("{")]


def test_anthropic_server_tool_blocks_are_assembled_in_order() -> None:
    recording = "anthropic_stream_web_search_server_tool.sse"
    blocks: dict[int, dict[str, Any]] = {}
    fragments: dict[int, str] = {}
    for event in _sse_data(recording):
        if event["type"] == "content_block_start":
            blocks[event["index"]] = json.loads(json.dumps(event["content_block"]))
        elif event["type"] == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                fragments[event["index"]] = fragments.get(event["index"], "") + delta[
                    "partial_json"]
            elif delta["type"] == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
    for index, text in fragments.items():
        if text.strip():
            blocks[index]["input"] = json.loads(text)
    want = [blocks[i] for i in sorted(blocks)]
    response = decode("anthropic", recording, "claude-sonnet-4-0")
    assert [b["type"] for b in response.replay] == [b["type"] for b in want]
    assert "server_tool_use" in {b["type"] for b in want}
    assert list(response.replay) == want
    assert response.tool_calls == []  # a server tool's input is not a call of ours


def test_a_start_object_is_copied_not_changed() -> None:
    response = decode("anthropic", "anthropic_stream_thinking_padded.sse")
    thinking = response.replay[0]
    assert thinking["type"] == "thinking" and thinking["signature"].startswith("EvMC")
    starts = [r["content_block"] for r in response.raw
              if isinstance(r, dict) and r.get("type") == "content_block_start"]
    assert starts[0] == {"type": "thinking", "thinking": "", "signature": ""}


def test_bedrock_reasoning_blocks_use_dotted_fields() -> None:
    manifest = load_manifest("bedrock")
    framer = make_framer("eventstream")
    frames = list(framer.feed((RECORDINGS / "bedrock_converse_stream_claude_reasoning.bin")
                              .read_bytes())) + list(framer.close())
    want: dict[int, dict[str, Any]] = {}
    for frame in frames:
        if frame.event != "contentBlockDelta":
            continue
        payload = json.loads(frame.data)
        block = want.setdefault(payload["contentBlockIndex"], {})
        delta = payload["delta"]
        if "text" in delta:
            block["text"] = block.get("text", "") + delta["text"]
        for name, value in (delta.get("reasoningContent") or {}).items():
            text = block.setdefault("reasoningContent", {}).setdefault("reasoningText", {})
            text[name] = text.get(name, "") + value
    response = decode("bedrock", "bedrock_converse_stream_claude_reasoning.bin")
    assert list(response.replay) == [want[i] for i in sorted(want)]
    assert response.replay[0]["reasoningContent"]["reasoningText"]["signature"]
    assert manifest.prompt_cache == "marks"


def test_gemini_keeps_every_part_with_its_signature() -> None:
    recording = "gemini_stream_thoughts_crlf.sse"
    want = [part for chunk in _sse_data(recording)
            for part in chunk["candidates"][0]["content"].get("parts", [])]
    response = decode("gemini", recording, "gemini-2.5-flash")
    assert list(response.replay) == want
    assert any(p.get("thought") for p in want)


def test_openai_responses_keeps_the_final_output_items() -> None:
    recording = "openai-responses_stream_reasoning_summary_gpt-5.sse"
    final = [e for e in _sse_data(recording) if e["type"] == "response.completed"][-1]
    response = decode("openai-responses", recording, "gpt-5")
    assert list(response.replay) == final["response"]["output"]
    assert response.replay[0]["type"] == "reasoning"


# ---------------------------------------------------------------- replay, sent back

THINKING_ANSWER = {
    "content": [{"type": "thinking", "thinking": "Weather: call the tool.", "signature": "sig=="},
                {"type": "tool_use", "id": "toolu_1", "name": "weather",
                 "input": {"city": "Florence"}}],
    "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}}


def test_anthropic_tool_loop_sends_the_blocks_back_verbatim() -> None:
    c, server = client("anthropic", THINKING_ANSWER)
    first = c.chat().user("Weather?").tools([WEATHER]).max_tokens(4096) \
        .reasoning(budget_tokens=2048).execute()
    assert first.replay == tuple(THINKING_ANSWER["content"])
    turn = first.to_message()
    assert (turn.thinking, turn.replay_provider) == ("Weather: call the tool.", "anthropic")
    c.chat().user("Weather?").message(turn).tool("toolu_1", "40 C").tools([WEATHER]) \
        .max_tokens(4096).reasoning(budget_tokens=2048).execute()
    sent = server.bodies[1]["messages"]
    assert sent[1] == {"role": "assistant", "content": THINKING_ANSWER["content"]}
    assert sent[2]["content"][0]["type"] == "tool_result"


def test_replay_is_never_sent_to_another_provider() -> None:
    turn = ChatResponse("Let me check.", "hmm", [], "tool_calls", Usage(), raw=None,
                        provider="bedrock",
                        replay=({"reasoningContent": {"reasoningText": {"text": "hmm"}}},)
                        ).to_message()
    c, server = client("anthropic")
    c.chat().user("Weather?").message(turn).user("And?").execute()
    assert server.bodies[0]["messages"][1] == {
        "role": "assistant", "content": [{"type": "text", "text": "Let me check."}]}


def test_a_dict_replay_needs_its_provider() -> None:
    with pytest.raises(ValueError, match="replay_provider"):
        Message.from_dict({"role": "assistant", "content": "", "replay": [{"type": "x"}]})
    kept = Message.from_dict({"role": "assistant", "content": "", "replay": [{"type": "x"}],
                              "replay_provider": "anthropic", "thinking": "t"})
    assert (kept.replay, kept.thinking) == (({"type": "x"},), "t")


def test_deepseek_sends_reasoning_content_on_tool_call_turns_only() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": "",
                                       "reasoning_content": "Call it.", "tool_calls": [
                                           {"id": "call_1", "type": "function", "function": {
                                               "name": "weather", "arguments": "{}"}}]},
                           "finish_reason": "tool_calls"}]}
    c, server = client("deepseek", answer)
    first = c.chat().user("Weather?").tools([WEATHER]).execute()
    c.chat().user("Weather?").message(first.to_message()).tool("call_1", "40 C") \
        .message(Message("assistant", "Hot.", thinking="It is hot.")).user("Thanks").execute()
    sent = server.bodies[1]["messages"]
    assert sent[1]["reasoning_content"] == "Call it."
    assert "reasoning_content" not in sent[3]


# ---------------------------------------------------------------- cache marks

def test_anthropic_cache_marks_on_system_tools_and_the_last_block() -> None:
    c, server = client("anthropic")
    c.chat().system("Long instructions.").cache().user("Question?").cache() \
        .tools([WEATHER, {**WEATHER, "name": "time"}], cache=True).execute()
    body = server.bodies[0]
    ephemeral = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": "Long instructions.",
                               "cache_control": ephemeral}]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "Question?",
                                               "cache_control": ephemeral}]
    assert [t.get("cache_control") for t in body["tools"]] == [None, ephemeral]


def test_anthropic_cache_after_a_tool_call_marks_the_last_call() -> None:
    c, server = client("anthropic")
    c.chat().user("Weather?").assistant("Checking.", tool_calls=[
        {"id": "t1", "name": "weather", "arguments": {}},
        {"id": "t2", "name": "weather", "arguments": {}}]).cache() \
        .tool("t1", "x").tool("t2", "y").tools([WEATHER]).execute()
    blocks = server.bodies[0]["messages"][1]["content"]
    assert [b.get("cache_control") for b in blocks] == [None, None, {"type": "ephemeral"}]


def test_bedrock_cache_points() -> None:
    answer = {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
              "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1,
                                                  "totalTokens": 2}}
    server = Server(answer)
    c = SyncAiClient.create("bedrock/m", api_key="AKIDEXAMPLE:secretsecret",
                            settings={"region": "us-east-1"},
                            http_client=httpx.Client(transport=httpx.MockTransport(server)),
                            max_retries=0)
    c.chat().system("Rules.").cache().user("Hi").cache().tools([WEATHER], cache=True).execute()
    body = server.bodies[0]
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": "Rules."}, point]
    assert body["messages"][0]["content"] == [{"text": "Hi"}, point]
    assert body["toolConfig"]["tools"][-1] == point


def test_automatic_caching_needs_no_mark_and_none_refuses_one() -> None:
    c, server = client("openai")
    c.chat().user("Hi").cache().execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}]
    c, server = client("ollama")
    with pytest.raises(EngineError, match="ollama has no prompt caching") as info:
        c.chat().user([Part.text("Hi", cache=True)]).execute()
    assert info.value.kind == "invalid_request" and server.bodies == []


def test_cache_needs_a_message_first() -> None:
    c, _ = client("anthropic")
    with pytest.raises(EngineError, match="add one first"):
        c.chat().cache()


# ---------------------------------------------------------------- roles, params, tools

def test_the_developer_role_where_there_is_one() -> None:
    c, server = client("openai")
    c.chat().developer("Be brief.").user("Hi").execute()
    assert server.bodies[0]["messages"][0] == {"role": "developer", "content": "Be brief."}
    deepseek = {"choices": [{"message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}]}
    c, server = client("deepseek", deepseek)
    c.chat().developer("Be brief.").user("Hi").execute()
    assert server.bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    c, server = client("anthropic")
    c.chat().system("One.").developer("Two.").user("Hi").execute()
    assert server.bodies[0]["system"] == "One.\n\nTwo."


@pytest.mark.parametrize("provider, where", [
    ("anthropic", ("top_k",)), ("gemini", ("generationConfig", "topK")),
    ("ollama", ("options", "top_k"))])
def test_top_k_is_mapped(provider: str, where: tuple[str, ...]) -> None:
    c, server = client(provider)
    c.chat().user("Hi").top_k(40).execute()
    value: Any = server.bodies[0]
    for key in where:
        value = value[key]
    assert value == 40


@pytest.mark.parametrize("provider, call, name", [
    ("openai", lambda chat: chat.top_k(5), "top_k"),
    ("anthropic", lambda chat: chat.seed(7), "seed"),
    ("openai-responses", lambda chat: chat.stop("END"), "stop"),
    ("perplexity", lambda chat: chat.seed(7), "seed"),
])
def test_a_param_no_template_reads_is_refused(provider: str, call: Any, name: str) -> None:
    c, server = client(provider, {})
    with pytest.raises(EngineError, match=f"{provider} does not take {name}") as info:
        call(c.chat().user("Hi")).execute()
    assert info.value.kind == "invalid_request" and server.bodies == []


def test_provider_tools_pass_through_where_the_manifest_sends_them() -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    c, server = client("anthropic")
    c.chat().user("News?").tools([WEATHER, search]).execute()
    assert server.bodies[0]["tools"][1] == search
    c, server = client("gemini")
    c.chat().user("News?").tools([WEATHER, {"googleSearch": {}}]).execute()
    assert server.bodies[0]["tools"] == [
        {"functionDeclarations": [{"name": "weather", "description": "Weather",
                                   "parameters": WEATHER["parameters"]}]},
        {"googleSearch": {}}]
    c, server = client("openai")
    with pytest.raises(EngineError, match="takes no provider tool entries"):
        c.chat().user("News?").tools([search]).execute()
    assert server.bodies == []


def test_a_tool_without_a_name_is_still_an_error() -> None:
    c, _ = client("openai")
    with pytest.raises(EngineError, match="a tool needs a 'name'"):
        c.chat().tools([{"description": "x", "parameters": {}}])
