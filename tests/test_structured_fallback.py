"""A response format emulated by a forced tool call (capabilities.response_format_fallback):
the exact request sent, the answer as content and parsed, the stream's events, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import EngineError, SyncAiClient
from engine.events import ContentDelta, StreamEvent, ThinkingDelta, ToolCallDelta, ToolCallStarted
from engine.protocol.structured import AnswerTool

pytestmark = pytest.mark.fast

REC = Path(__file__).parent.parent / "conformance" / "recordings"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL_ANSWER = {"output": {"message": {"role": "assistant", "content": [
    {"text": "Here it is."},
    {"toolUse": {"toolUseId": "tooluse_1", "name": "City", "input": {"city": "Paris"}}}]}},
    "stopReason": "tool_use", "usage": {"inputTokens": 9, "outputTokens": 5, "totalTokens": 14}}


class Server:
    def __init__(self, answer: bytes, content_type: str = "application/json") -> None:
        self.answer, self.content_type = answer, content_type
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, content=self.answer,
                              headers={"content-type": self.content_type})


def bedrock(server: Server) -> SyncAiClient:
    return SyncAiClient.create("bedrock/us.amazon.nova-pro-v1:0",
                               api_key="AKIDEXAMPLE:secretsecret",
                               settings={"region": "us-east-1"}, max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(server)))


def test_a_schema_is_sent_as_one_forced_tool_and_its_input_is_the_answer() -> None:
    server = Server(json.dumps(TOOL_ANSWER).encode())
    resp = bedrock(server).chat().user("Capital of France?").response_format(
        CITY, name="City").execute()
    body = server.bodies[0]
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "City", "description": "Give your answer by calling "
                                "this tool: its arguments are the whole answer.",
                                "inputSchema": {"json": CITY}}}],
        "toolChoice": {"tool": {"name": "City"}}}
    assert (resp.content, resp.parsed, resp.tool_calls) == ('{"city": "Paris"}',
                                                            {"city": "Paris"}, [])
    assert (resp.finish_reason, resp.thinking) == ("stop", "Here it is.")
    assert resp.to_message().tool_calls == ()


def test_json_mode_is_a_forced_tool_taking_any_object() -> None:
    answer = json.loads(json.dumps(TOOL_ANSWER).replace('"City"', '"json_answer"'))
    server = Server(json.dumps(answer).encode())
    resp = bedrock(server).chat().user("Capital?").json().execute()
    spec = server.bodies[0]["toolConfig"]["tools"][0]["toolSpec"]
    assert (spec["name"], spec["inputSchema"]) == ("json_answer", {"json": {"type": "object"}})
    assert resp.parsed == {"city": "Paris"}


def test_the_real_nova_tool_stream_gives_the_arguments_as_content() -> None:
    # A recorded ConverseStream answer (see conformance/recordings/README.md): a
    # <thinking> preamble, then toolUse get_temperature {"city": "Paris"}.
    raw = (REC / "bedrock_converse_stream_nova_tooluse.bin").read_bytes()
    server = Server(raw, "application/vnd.amazon.eventstream")
    schema = {"type": "object", "properties": {"city": {"const": "Paris"}}}
    stream = bedrock(server).chat().user("Temperature in the capital of France?") \
        .response_format(schema, name="get_temperature").stream()
    events = list(stream)
    content = "".join(e.as_content_delta.text for e in events if e.is_content_delta)
    thinking = "".join(e.as_thinking_delta.text for e in events if e.is_thinking_delta)
    assert content == '{"city":"Paris"}'
    assert thinking.startswith("<thinking> To find the temperature")
    assert not any(e.is_tool_call_started or e.is_tool_call_delta or e.is_tool_call_ended
                   for e in events)
    assert [e.as_finished.finish_reason for e in events if e.is_finished] == ["stop"]
    resp = stream.response
    assert (resp.content, resp.parsed, resp.thinking) == (content, {"city": "Paris"}, thinking)


def test_an_answer_that_breaks_the_schema_is_malformed_with_the_text() -> None:
    answer = json.loads(json.dumps(TOOL_ANSWER).replace('"Paris"', "7"))
    with pytest.raises(EngineError) as caught:
        bedrock(Server(json.dumps(answer).encode())).chat().user("x").response_format(
            CITY, name="City").execute()
    assert caught.value.kind == "malformed_response"
    assert "at city: 7 is not of type 'string'" in caught.value.message
    assert caught.value.partial.content == '{"city": 7}'


def test_no_call_of_the_answer_tool_and_no_text_is_malformed() -> None:
    answer = {**TOOL_ANSWER, "output": {"message": {"role": "assistant", "content": []}}}
    with pytest.raises(EngineError, match="did not call the 'City' tool"):
        bedrock(Server(json.dumps(answer).encode())).chat().user("x").response_format(
            CITY, name="City").execute()


def test_the_emulation_cannot_be_combined_with_tools() -> None:
    server = Server(b"{}")
    tool = {"name": "lookup", "parameters": {"type": "object"}}
    with pytest.raises(EngineError) as caught:
        bedrock(server).chat().user("x").tools([tool]).response_format(CITY).execute()
    assert caught.value.message.startswith("bedrock has no native json_schema mode and "
                                           "emulates it with a forced tool call")
    assert server.bodies == []


def test_a_whole_argument_object_at_the_end_is_one_content_delta() -> None:
    answer = AnswerTool("City")
    from engine.events import ToolCallEnded
    from engine.types import ToolCall
    events = [StreamEvent(ContentDelta("Sure.")), StreamEvent(ToolCallStarted(0, "t", "City")),
              StreamEvent(ToolCallEnded(0, ToolCall("t", "City", {"city": "Paris"})))]
    assert answer(events) == [StreamEvent(ThinkingDelta("Sure.")),
                              StreamEvent(ContentDelta('{"city": "Paris"}'))]
    other = [StreamEvent(ToolCallStarted(1, "u", "Other")), StreamEvent(ToolCallDelta(1, "{"))]
    assert answer(other) == other


def test_the_fallback_needs_the_tool_choice_it_forces(tmp_path: Path) -> None:
    from engine.validate import validate_paths
    path = tmp_path / "child.yaml"
    path.write_text("manifest: 1\nid: child\nextends: bedrock\n"
                    "capabilities: {tool_choice: [auto]}\n")
    problems = validate_paths([str(path)])[1]
    assert [p.split(": ", 1)[1] for p in problems] == [
        "capabilities.response_format_fallback: tool needs tools and the tool choice mode "
        "'tool'"]


def test_a_model_with_the_native_format_uses_it_and_emulates_only_json_mode() -> None:
    def client(server: Server) -> SyncAiClient:
        return SyncAiClient.create("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
                                   api_key="AKIDEXAMPLE:secretsecret", max_retries=0,
                                   settings={"region": "us-east-1"}, http_client=httpx.Client(
                                       transport=httpx.MockTransport(server)))
    text = {**TOOL_ANSWER, "output": {"message": {"role": "assistant", "content": [
        {"text": '{"city": "Paris"}'}]}}, "stopReason": "end_turn"}
    native = Server(json.dumps(text).encode())
    assert client(native).chat().user("x").response_format(CITY, name="City").execute() \
        .parsed == {"city": "Paris"}
    assert "toolConfig" not in native.bodies[0]
    assert native.bodies[0]["outputConfig"]["textFormat"]["structure"]["jsonSchema"] == {
        "schema": json.dumps(CITY, separators=(",", ":")), "name": "City"}
    emulated = Server(json.dumps(json.loads(json.dumps(TOOL_ANSWER).replace(
        '"City"', '"json_answer"'))).encode())
    assert client(emulated).chat().user("x").json().execute().parsed == {"city": "Paris"}
    assert "outputConfig" not in emulated.bodies[0]
    assert emulated.bodies[0]["toolConfig"]["toolChoice"] == {"tool": {"name": "json_answer"}}
