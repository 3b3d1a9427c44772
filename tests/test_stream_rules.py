"""Stream rule mechanisms on formats no shipped manifest uses yet: usage nested in
choices[0], the binary event-stream (with an exception frame), a JSON array
streamed element by element. The manifests here are test-local, written into a
user directory on AI_PROTOCOL_PATH exactly as an integrator would."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
from decoding import Fed as StreamDecoder

from engine import AiClient, EngineError
from engine.manifest import clear_cache, load_manifest

REC = Path(__file__).resolve().parent.parent / "conformance" / "recordings"

NESTED_USAGE = """\
manifest: 1
id: nested
extends: openai
base_url: https://nested.test/v1
auth: {scheme: bearer, env: [NESTED_KEY]}
chat:
  overrides: []
  stream:
    events:
      - when: "!error"
        content: choices[0].delta.content
        finish_reason: choices[0].finish_reason
        usage:
          prompt_tokens: choices[0].usage.prompt_tokens
          completion_tokens: choices[0].usage.completion_tokens
          total_tokens: choices[0].usage.total_tokens
"""

EVENTSTREAM = """\
manifest: 1
id: evstream
base_url: https://evstream.test
auth: {scheme: bearer, env: [EV_KEY]}
chat:
  path: "/model/{{ model | path_segment }}/converse"
  body:
    messages:
      $each: "{{ messages }}"
      as: m
      do: {role: "{{ m.role }}", content: [{text: "{{ m.content }}"}]}
  response:
    content: "join('', output.message.content[?text].text)"
    finish_reason: stopReason
  stream:
    path: "/model/{{ model | path_segment }}/converse-stream"
    framing: eventstream
    eof_ok: true
    events:
      - event: [throttlingException, validationException, internalServerException]
        error: {message: message, code: frame().event}
      - event: contentBlockDelta
        content: delta.text
        thinking: delta.reasoningContent.text
        tool_call: {key: contentBlockIndex, arguments: delta.toolUse.input}
      - event: contentBlockStart
        tool_call:
          key: contentBlockIndex
          id: start.toolUse.toolUseId
          name: start.toolUse.name
      - event: contentBlockStop
        tool_call_end: {key: contentBlockIndex}
      - event: messageStop
        finish_reason: stopReason
      - event: metadata
        usage:
          prompt_tokens: usage.inputTokens
          completion_tokens: usage.outputTokens
          total_tokens: usage.totalTokens
finish_reasons: {end_turn: stop, tool_use: tool_calls, max_tokens: length}
errors:
  message: message
  rules:
    - {code: throttlingException, kind: rate_limited}
"""


@pytest.fixture
def manifests(tmp_path, monkeypatch):
    def write(name: str, text: str):
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
        monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
        clear_cache()
        return load_manifest(name)

    yield write
    clear_cache()


def decode(manifest, chunks):
    decoder = StreamDecoder(manifest, "m")
    events = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    if not decoder.done and decoder.error is None:
        events += decoder.close()
    return decoder, events


def test_usage_nested_in_the_first_choice(manifests):
    # The final two chunks are the REAL raw SSE quoted in WIREFORMATS.md section 18.
    body = (
        b'data: {"id":"chatcmpl-67c96964971a7a505b6ff17a","object":"chat.completion.chunk",'
        b'"created":1741252964,"model":"moonshot-v1-8k","choices":[{"index":0,"delta":'
        b'{"content":"\xe3\x80\x82"},"finish_reason":null}],"system_fingerprint":"fpv0_ca1d2527"}\n\n'
        b'data: {"id":"chatcmpl-67c96964971a7a505b6ff17a","object":"chat.completion.chunk",'
        b'"created":1741252964,"model":"moonshot-v1-8k","choices":[{"index":0,"delta":{},'
        b'"finish_reason":"stop","usage":{"prompt_tokens":39,"completion_tokens":211,'
        b'"total_tokens":250}}],"system_fingerprint":"fpv0_ca1d2527"}\n\n'
        b"data: [DONE]\n\n"
    )
    decoder, events = decode(manifests("nested", NESTED_USAGE), [body[:97], body[97:]])
    response = decoder.response
    assert decoder.done and response.content == "\u3002" and response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens,
            response.usage.total_tokens) == (39, 211, 250)
    assert [e.type for e in events] == ["content_delta", "usage", "finished"]


def test_eventstream_tool_use_recording(manifests):
    manifest = manifests("evstream", EVENTSTREAM)
    raw = (REC / "bedrock_converse_stream_nova_tooluse.bin").read_bytes()
    for chunks in ([raw], [raw[i:i + 7] for i in range(0, len(raw), 7)]):
        decoder, events = decode(manifest, chunks)
        response = decoder.response
        assert decoder.done and decoder.error is None
        assert response.content.startswith("<thinking")
        assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
            ("tooluse_lAG_zP8QRHmSYOwZzzaCqA", "get_temperature", {"city": "Paris"})]
        assert response.finish_reason == "tool_calls"
        assert (response.usage.prompt_tokens, response.usage.completion_tokens,
                response.usage.total_tokens) == (471, 91, 562)
        assert events[-1].is_finished


def test_eventstream_reasoning_recording(manifests):
    manifest = manifests("evstream", EVENTSTREAM)
    decoder, _ = decode(manifest, [(REC / "bedrock_converse_stream_claude_reasoning.bin")
                                   .read_bytes()])
    assert decoder.done and decoder.response.thinking and decoder.response.content


def test_eventstream_exception_frame_is_classified(manifests):
    manifest = manifests("evstream", EVENTSTREAM)
    good = (REC / "bedrock_converse_stream_nova_tooluse.bin").read_bytes()
    # The first three frames of the recording, then the constructed exception frame.
    frames, offset = [], 0
    while offset < len(good) and len(frames) < 3:
        size = int.from_bytes(good[offset:offset + 4], "big")
        frames.append(good[offset:offset + size])
        offset += size
    exception = (REC / "bedrock_eventstream_exception_CONSTRUCTED.bin").read_bytes()
    decoder, events = decode(manifest, [b"".join(frames) + exception])
    assert [e.type for e in events] == ["content_delta", "content_delta"]
    error = decoder.error
    assert error is not None and error.kind == "rate_limited" and error.retryable
    assert error.code == "throttlingException"
    assert error.message == "Too many tokens, please wait before trying again."
    assert error.partial.content == events[0].as_content_delta.text + \
        events[1].as_content_delta.text


async def test_eventstream_through_the_public_api(manifests):
    manifests("evstream", EVENTSTREAM)
    raw = (REC / "bedrock_converse_stream_nova_tooluse.bin").read_bytes()
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=raw,
                              headers={"content-type": "application/vnd.amazon.eventstream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create("evstream/us.amazon.nova-micro-v1:0", api_key="k-ev-1",
                                       http_client=http)
        stream = client.chat().user("Temperature in Paris?").stream()
        started = [e.as_tool_call_started async for e in stream if e.is_tool_call_started]
    assert str(seen[0].url) == ("https://evstream.test/model/us.amazon.nova-micro-v1%3A0/"
                                "converse-stream")
    assert json.loads(seen[0].content) == {"messages": [
        {"role": "user", "content": [{"text": "Temperature in Paris?"}]}]}
    assert [(s.id, s.name) for s in started] == [
        ("tooluse_lAG_zP8QRHmSYOwZzzaCqA", "get_temperature")]
    assert stream.response.tool_calls[0].id == started[0].id


def test_json_array_framing_with_a_manifest(manifests):
    manifest = manifests("arrayed", """\
        manifest: 1
        id: arrayed
        extends: gemini
        chat:
          stream:
            query: null
            framing: json-array
        """)
    # The recorded SSE events, re-framed as the one JSON array the endpoint
    # streams without alt=sse (WIREFORMATS.md section 4).
    sse = (REC / "gemini_stream_thoughts_crlf.sse").read_bytes().decode("utf-8")
    elements = [e[len("data: "):] for e in sse.split("\r\n\r\n") if e.strip()]
    body = ("[" + "\r\n,".join(elements) + "]").encode("utf-8")
    whole, events = decode(manifest, [body])
    _, split_events = decode(manifest, [body[i:i + 5] for i in range(0, len(body), 5)])
    assert [e.payload for e in events] == [e.payload for e in split_events]
    assert whole.done and whole.response.finish_reason == "stop"
    expected = "".join(p["text"] for e in elements for p in json.loads(e)["candidates"][0][
        "content"].get("parts", []) if p.get("text") and not p.get("thought"))
    assert whole.response.content == expected and expected
    truncated, _ = decode(manifest, [body[: len(body) // 2]])
    assert truncated.error is not None and truncated.error.kind == "incomplete_stream"
    partial = truncated.error.partial
    assert partial.thinking and whole.response.thinking.startswith(partial.thinking)
    assert expected.startswith(partial.content)


def test_stream_error_rule_needs_a_known_shape(manifests):
    with pytest.raises(EngineError) as info:
        manifests("broken", NESTED_USAGE.replace("id: nested", "id: broken").replace(
            "      - when: \"!error\"", "      - when: \"!error\"\n        colour: red"))
    assert "colour: unknown field" in str(info.value)



def _frames_for(manifest_id: str):
    """The manifest's rules, and frames shaped like its own: event names and test
    strings its rules use, with arbitrary JSON around them."""
    from hypothesis import strategies as st

    from engine.protocol.framing import Frame
    from engine.protocol.rules import FrameRules

    rules = FrameRules(load_manifest(manifest_id))
    literals = sorted({lit for _, lit in rules._events if lit is not None} | {"other"})
    names = sorted({name for r in rules.spec.events if r.match.events for name in r.match.events}
                   | {"ping", "message_stop"})
    leaf = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(literals)
    value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
        st.sampled_from(["type", "delta", "text", "index", "error", "usage", "message"]),
        inner, max_size=3), max_leaves=8)
    body = st.dictionaries(st.sampled_from(["type", "delta", "index", "error", "usage",
                                            "content_block", "message"]), value, max_size=4)
    return rules, st.builds(lambda ev, data: Frame(json.dumps(data), ev, {}, 0),
                            st.none() | st.sampled_from(names), body)


@pytest.mark.parametrize("manifest_id", ["anthropic", "openai", "openai-responses", "gemini"])
def test_skipping_rules_by_their_type_test_changes_no_result(manifest_id):
    """The mapper skips a rule whose ``type == '…'`` test fails without evaluating its
    condition; the deltas are those of evaluating every condition in order."""
    import copy

    from hypothesis import given, settings

    rules, frames = _frames_for(manifest_id)
    plain = copy.copy(rules)
    plain._events = tuple((rule, None) for rule, _ in rules._events)  # skip nothing
    if manifest_id == "anthropic":
        assert sum(lit is not None for _, lit in rules._events) >= 8

    def outcome(r, frame):
        try:
            return ("ok", repr(r.map(frame, False)))
        except EngineError as exc:
            return ("error", exc.kind, str(exc))

    @settings(max_examples=300, deadline=None)
    @given(frame=frames)
    def check(frame):
        assert outcome(rules, frame) == outcome(plain, frame)

    check()
