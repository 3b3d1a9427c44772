"""Tests of engine.protocol.framing: every framer, split invariance, recordings, limits, fuzz."""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.protocol.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAMERS,
    Frame,
    make_framer,
)

REC = Path(__file__).parent.parent / "conformance" / "recordings"
SSE_RECORDINGS = sorted(REC.glob("*.sse"))
BIN_RECORDINGS = sorted(REC.glob("*.bin"))
NAMES = ("sse", "sse-bare-json", "ndjson", "json-array", "eventstream", "json")

FUZZ = settings(max_examples=60, deadline=None)
cuts = st.lists(st.integers(min_value=0, max_value=1 << 24), max_size=25)


# ---------------------------------------------------------------- helpers


def run(name: str, chunks: Iterable[bytes], **kw: int) -> list[Frame]:
    framer = make_framer(name, **kw)
    frames: list[Frame] = []
    for chunk in chunks:
        frames += framer.feed(chunk)
    return frames + framer.close()


def split(data: bytes, points: Iterable[int]) -> list[bytes]:
    bounds = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(bounds)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def outcome(name: str, chunks: Iterable[bytes], **kw: int) -> list[Frame] | str:
    """The frames, or the error kind: what must not depend on the chunking."""
    try:
        return run(name, chunks, **kw)
    except EngineError as exc:
        return exc.kind


def assert_invariant(name: str, data: bytes, points: Iterable[int] = (), **kw: int) -> list[Frame]:
    whole = run(name, [data], **kw)
    assert run(name, bytewise(data), **kw) == whole
    assert run(name, split(data, points), **kw) == whole
    return whole


def assert_every_two_way_split(name: str, data: bytes) -> list[Frame]:
    whole = run(name, [data])
    for i in range(len(data) + 1):
        assert run(name, [data[:i], data[i:]]) == whole, i
    return whole


def raises(kind: str, name: str, chunks: Iterable[bytes], **kw: int) -> EngineError:
    with pytest.raises(EngineError) as info:
        run(name, chunks, **kw)
    assert info.value.kind == kind, info.value
    return info.value


def sse(text: str | bytes) -> list[Frame]:
    data = text.encode() if isinstance(text, str) else text
    return assert_invariant("sse", data)


# ---------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(FRAMERS) == set(NAMES)
    assert DEFAULT_MAX_FRAME_BYTES == 16 * 1024 * 1024


def test_unknown_framer_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"eventstream.*json-array.*ndjson.*sse"):
        make_framer("xml")


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_max_frame_bytes(bad: int) -> None:
    with pytest.raises(ValueError):
        make_framer("sse", max_frame_bytes=bad)


@pytest.mark.parametrize("name", NAMES)
def test_empty_feed_is_noop_and_closed_framer_refuses(name: str) -> None:
    framer = make_framer(name)
    assert framer.feed(b"") == []
    framer.close()
    with pytest.raises(ValueError):
        framer.feed(b"x")
    with pytest.raises(ValueError):
        framer.close()


def test_frame_defaults() -> None:
    frame = Frame("x")
    assert (frame.event, dict(frame.meta), frame.offset) == (None, {}, 0)


# ---------------------------------------------------------------- sse rules


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_sse_line_ends(end: str) -> None:
    text = f"data: a{end}{end}data: b{end}data: c{end}{end}"
    assert [f.data for f in sse(text)] == ["a", "b\nc"]


def test_sse_mixed_line_ends() -> None:
    frames = sse("data: a\r\n\ndata: b\r\rdata: c\n\r\n")
    assert [f.data for f in frames] == ["a", "b", "c"]
    assert [f.offset for f in frames] == [0, 10, 19]


def test_sse_cr_and_lf_in_separate_feeds_are_one_line_end() -> None:
    chunks = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]
    assert run("sse", chunks) == [Frame("a\nb", None, {}, 0)]


def test_sse_value_space_handling() -> None:
    text = "data:nospace\n\ndata:  two\n\ndata\n\ndata:\ndata:\n\ndata: :x: y\n\n"
    assert [f.data for f in sse(text)] == ["nospace", " two", "", "\n", ":x: y"]


@pytest.mark.parametrize("comment", [": OPENROUTER PROCESSING", ": keep-alive",
                                     ":HTTP_STATUS/200", ":"])
def test_sse_comments_ignored(comment: str) -> None:
    assert sse(f"{comment}\n\n{comment}\n") == []
    frames = sse(f"{comment}\ndata: x\n{comment}\ndata: y\n\n")
    assert frames == [Frame("x\ny", None, {}, len(comment) + 1)]


def test_sse_event_id_retry() -> None:
    text = "event: e\nid: 7\nretry: 1000\ndata: x\n\ndata: y\n\nretry: 10a\nid\ndata: z\n\n"
    frames = sse(text)
    assert [(f.data, f.event, dict(f.meta)) for f in frames] == [
        ("x", "e", {"id": "7", "retry": "1000"}),
        ("y", None, {"id": "7"}),
        ("z", None, {"id": ""}),
    ]


def test_sse_id_with_nul_ignored_and_id_persists() -> None:
    frames = sse("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [dict(f.meta) for f in frames] == [{"id": "1"}, {"id": "1"}]


def test_sse_no_id_no_meta() -> None:
    assert sse("data: a\n\n")[0].meta == {}


def test_sse_retry_only_ascii_digits() -> None:
    frames = sse("retry: \u0661\u0662\ndata: a\n\nretry:\ndata: b\n\nretry: 05\ndata: c\n\n")
    assert [dict(f.meta) for f in frames] == [{}, {}, {"retry": "05"}]


def test_sse_bom_stripped_only_at_start() -> None:
    body = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n"
    frames = sse(body)
    assert [(f.data, f.offset) for f in frames] == [("a", 3), ("c", body.index(b"data: c"))]


def test_sse_event_without_data_and_blank_lines() -> None:
    assert sse("event: ping\n\n") == [Frame("", "ping", {}, 0)]
    assert sse("\n\n\r\n\r\r") == []
    assert sse("id: 5\n\nretry: 3\n\nfoo: bar\n\n") == []


def test_sse_empty_event_name_is_no_name() -> None:
    assert sse("event:\ndata: a\n\nevent\n\n") == [Frame("a", None, {}, 0)]


def test_sse_unknown_fields_ignored() -> None:
    assert sse("foo: bar\nData: no\ndata: x\n\n") == [Frame("x", None, {}, 0)]


@pytest.mark.parametrize("tail", ["data: x", "data: x\n", "data: x\r", "data: x\r\n"])
def test_sse_unterminated_final_event_dispatched_at_close(tail: str) -> None:
    assert sse("data: a\n\n" + tail) == [Frame("a", None, {}, 0), Frame("x", None, {}, 9)]


def test_sse_unterminated_event_name_dispatched_at_close() -> None:
    assert sse("event: done") == [Frame("", "done", {}, 0)]


def test_sse_invalid_utf8_is_malformed_with_offset_and_excerpt() -> None:
    body = b"data: ok\n\ndata: \xff\xfe\n\n"
    for chunks in ([body], bytewise(body)):
        err = raises("malformed_response", "sse", chunks)
        assert "at byte 16" in err.message
        assert "\\xff" in err.message


def test_sse_invalid_utf8_in_comment_is_malformed() -> None:
    raises("malformed_response", "sse", [b": \xc3\n\n"])


UNICODE_SSE = (
    "\ufeff: comment \U0001f5fc\r\n"
    'event: gr\u00f6\u00dfe\r\nid: 42\r\ndata: {"t":"\u5df4\u9ece \U0001f5fc"}\r\ndata:2\r\n\r\n'
    "data: \u00e9t\u00e9\r\r"
    "retry: 100\nevent: ping\n\n"
    "data: tail \u2713"
).encode()


def test_sse_every_two_way_split_with_unicode_and_crlf() -> None:
    frames = assert_every_two_way_split("sse", UNICODE_SSE)
    assert [(f.data, f.event) for f in frames] == [
        ('{"t":"\u5df4\u9ece \U0001f5fc"}\n2', "gr\u00f6\u00dfe"),
        ("\u00e9t\u00e9", None),
        ("", "ping"),
        ("tail \u2713", None),
    ]
    starts = (b"event: gr", b"data: \xc3\xa9", b"retry", b"data: tail")
    assert [f.offset for f in frames] == [UNICODE_SSE.index(s) for s in starts]
    assert [dict(f.meta) for f in frames] == [{"id": "42"}] * 2 + [
        {"id": "42", "retry": "100"}, {"id": "42"}]


@FUZZ
@given(points=cuts)
def test_sse_unicode_hypothesis_splits(points: list[int]) -> None:
    assert_invariant("sse", UNICODE_SSE, points)


# ---------------------------------------------------------------- sse recordings


def reference_events(body: bytes) -> list[tuple[str, str | None, int]]:
    """Independent oracle for the recordings: split on the blank-line terminator."""
    term = b"\r\n\r\n" if b"\r\n" in body else b"\n\n"
    eol = term[: len(term) // 2]
    events = []
    pos = 0
    for block in body.split(term):
        lines = block.split(eol)
        data = [line[6:] for line in lines if line.startswith(b"data: ")]
        names = [line[7:] for line in lines if line.startswith(b"event: ")]
        fields = [i for i, line in enumerate(lines) if line and not line.startswith(b":")]
        if data or names:
            offset = pos + sum(len(line) + len(eol) for line in lines[: fields[0]])
            name = names[-1].decode() if names else None
            events.append((b"\n".join(data).decode(), name, offset))
        pos += len(block) + len(term)
    return events


@pytest.mark.parametrize("path", SSE_RECORDINGS, ids=lambda p: p.name)
def test_sse_recording_matches_reference(path: Path) -> None:
    body = path.read_bytes()
    frames = assert_invariant("sse", body, range(7, len(body), 4093))
    assert [(f.data, f.event, f.offset) for f in frames] == reference_events(body)
    assert len(frames) == body.count(b"data: ")
    for frame in frames:
        if frame.data != "[DONE]":
            json.loads(frame.data)


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, len(SSE_RECORDINGS) - 1), points=cuts)
def test_sse_recordings_hypothesis_splits(index: int, points: list[int]) -> None:
    body = SSE_RECORDINGS[index].read_bytes()
    assert run("sse", split(body, points)) == run("sse", [body])


def rec(name: str) -> bytes:
    return (REC / name).read_bytes()


def test_gemini_crlf_recording() -> None:
    body = rec("gemini_stream_thoughts_crlf.sse")
    frames = run("sse", bytewise(body))
    assert len(frames) == body.count(b"\r\n\r\n") == 23
    assert all("candidates" in json.loads(f.data) for f in frames)
    assert all(f.event is None and f.meta == {} for f in frames)
    one = run("sse", bytewise(rec("gemini_stream_functioncall_crlf.sse")))
    assert len(one) == 1
    assert json.loads(one[0].data)["candidates"][0]["finishReason"] == "STOP"


def test_anthropic_event_names() -> None:
    body = rec("anthropic_stream_thinking_padded.sse")
    frames = run("sse", [body])
    names = [f.event for f in frames]
    assert len(frames) == body.count(b"\nevent: ") + body.startswith(b"event: ")
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert "ping" in names
    assert set(names) == {"message_start", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop", "ping"}
    assert all(json.loads(f.data)["type"] == f.event for f in frames)


def test_openai_responses_event_names_match_payload_type() -> None:
    for name in ("openai_responses_stream_text.sse", "openai_responses_stream_function_call.sse"):
        frames = run("sse", [rec(name)])
        assert all(json.loads(f.data)["type"] == f.event for f in frames)
        assert frames[-1].event == "response.completed"


def test_openrouter_comments_produce_no_frames() -> None:
    body = rec("openrouter_stream_comments_then_error.sse")
    frames = run("sse", bytewise(body))
    assert body.count(b": OPENROUTER PROCESSING") == 17
    assert len(frames) == body.count(b"\ndata: ") + body.startswith(b"data: ") == 5
    assert all("OPENROUTER" not in f.data for f in frames)
    assert frames[0].offset == 17 * len(b": OPENROUTER PROCESSING\n\n")
    assert frames[-1].data == "[DONE]"
    assert json.loads(frames[-2].data)["error"]["code"] == 400


def test_groq_midstream_error_event_is_last() -> None:
    frames = run("sse", [rec("groq_stream_midstream_error_event.sse")])
    assert frames[-1].event == "error"
    assert json.loads(frames[-1].data)["error"]["code"] == "tool_use_failed"
    assert all(f.event is None for f in frames[:-1])


@pytest.mark.parametrize("path", [p for p in SSE_RECORDINGS if b"[DONE]" in p.read_bytes()],
                         ids=lambda p: p.name)
def test_done_sentinel_is_last_frame(path: Path) -> None:
    assert run("sse", [path.read_bytes()])[-1].data == "[DONE]"


# ---------------------------------------------------------------- ndjson

NDJSON = (
    '{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00",'
    '"message":{"role":"assistant","content":"The \u5df4\u9ece \U0001f5fc","images":null},'
    '"done":false}\r\n'
    "\n"
    "   \n"
    '{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":'
    '[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}\n'
    '{"error":"an error was encountered while running the model"}\n'
    '{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,'
    '"done_reason":"stop","eval_count":282}'
).encode()


def test_ndjson_lines() -> None:
    frames = assert_every_two_way_split("ndjson", NDJSON)
    assert len(frames) == 4
    docs = [json.loads(f.data) for f in frames]
    assert docs[0]["message"]["content"] == "The \u5df4\u9ece \U0001f5fc"
    assert docs[2] == {"error": "an error was encountered while running the model"}
    assert docs[3]["done"] is True
    starts = [0] + [i + 1 for i, b in enumerate(NDJSON) if b == 0x0A]
    assert [f.offset for f in frames] == [starts[0], starts[3], starts[4], starts[5]]


@FUZZ
@given(points=cuts)
def test_ndjson_hypothesis_splits(points: list[int]) -> None:
    assert_invariant("ndjson", NDJSON, points)


def test_ndjson_no_validation_and_cr_only_is_not_a_line_end() -> None:
    frames = run("ndjson", [b"not json\na\rb\r\n\r\n"])
    assert [f.data for f in frames] == ["not json", "a\rb"]


def test_ndjson_blank_tail_and_bom() -> None:
    assert run("ndjson", [b"\xef\xbb\xbf{}\n  "]) == [Frame("{}", offset=3)]
    assert run("ndjson", [b""]) == []


def test_ndjson_invalid_utf8() -> None:
    err = raises("malformed_response", "ndjson", [b'{}\n{"a":"\xc3("}\n'])
    assert "at byte 9" in err.message


# ---------------------------------------------------------------- json-array

ARRAY = (
    b'[{"candidates": [{"content": {"parts": [{"text": "a } ] { [ \\" \\\\"}]}}]}\r\n'
    b',{"text": "\xe5\xb7\xb4\xe9\xbb\x8e \xf0\x9f\x97\xbc", "nested": [[1, [2]], {"x": []}]}'
    b'\r\n, "str\\"ing]" ,-1.5e3,true , null\r\n]\r\n'
)


def test_json_array_elements() -> None:
    frames = assert_every_two_way_split("json-array", ARRAY)
    docs = [json.loads(f.data) for f in frames]
    assert docs[0]["candidates"][0]["content"]["parts"][0]["text"] == 'a } ] { [ " \\'
    assert docs[1]["nested"] == [[1, [2]], {"x": []}]
    assert docs[2:] == ['str"ing]', -1500.0, True, None]
    assert [f.offset for f in frames] == [ARRAY.index(t) for t in
                                          (b'{"cand', b'{"text": "\xe5', b'"str', b"-1.5", b"true",
                                           b"null")]


@FUZZ
@given(points=cuts)
def test_json_array_hypothesis_splits(points: list[int]) -> None:
    assert_invariant("json-array", ARRAY, points)


def test_json_array_error_object_body_is_one_frame() -> None:
    body = b' \n{"error": {"code": 429, "message": "x ] }", "details": [{}]}}\n'
    assert assert_invariant("json-array", body) == [Frame(body.strip().decode(), offset=2)]
    wrapped = b'[{"error": {"code": 400}}]'
    assert [f.data for f in run("json-array", [wrapped])] == ['{"error": {"code": 400}}']


@pytest.mark.parametrize("body", [b"", b"  \r\n", b"[]", b" [ ] ", b"\xef\xbb\xbf[]"])
def test_json_array_empty(body: bytes) -> None:
    assert run("json-array", bytewise(body)) == []


@pytest.mark.parametrize("body", [b"[", b'[{"a":1}', b'[{"a":1},', b'[{"a":"}', b'[{"a":"\\',
                                  b"[1", b'{"a"', b'[{"a":[1]}\r\n,{'])
def test_json_array_unclosed_is_incomplete(body: bytes) -> None:
    raises("incomplete_stream", "json-array", [body])
    raises("incomplete_stream", "json-array", bytewise(body))


@pytest.mark.parametrize("body", [b"x[]", b"<html>", b"[1]x", b"[1 2]", b"[,1]", b"[1,]",
                                  b'[{"a":1]}', b"[}", b'{"a":1}{"b":2}', b'"top"', b"[@]"])
def test_json_array_garbage_is_malformed(body: bytes) -> None:
    err = raises("malformed_response", "json-array", [body])
    assert "at byte" in err.message


def test_json_array_invalid_utf8_element() -> None:
    raises("malformed_response", "json-array", [b'["ok", "\xff"]'])


# ---------------------------------------------------------------- json


def test_json_whole_body() -> None:
    body = b'\xef\xbb\xbf\n\n  {"a": "\xe5\xb7\xb4"}\n'
    assert assert_invariant("json", body) == [Frame('\n\n  {"a": "\u5df4"}\n', offset=0)]
    assert run("json", []) == [Frame("")]
    assert run("json", [b"\xef\xbb\xbf"]) == [Frame("")]
    assert run("json", [rec("azure_openai_v1_chat_nonstream.json")])[0].data.startswith("{")


def test_json_invalid_utf8() -> None:
    err = raises("malformed_response", "json", [b'{"a":', b'"\xff"}'])
    assert "at byte 6" in err.message


# ---------------------------------------------------------------- eventstream


def header(name: str, kind: int, value: bytes) -> bytes:
    raw = name.encode()
    return bytes([len(raw)]) + raw + bytes([kind]) + value


def string_header(name: str, value: str) -> bytes:
    raw = value.encode()
    return header(name, 7, struct.pack(">H", len(raw)) + raw)


def message(headers: bytes, payload: bytes, total: int | None = None) -> bytes:
    size = total if total is not None else 16 + len(headers) + len(payload)
    prelude = struct.pack(">II", size, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(name: str, payload: str) -> bytes:
    headers = (
        string_header(":event-type", name)
        + string_header(":content-type", "application/json")
        + string_header(":message-type", "event")
    )
    return message(headers, payload.encode())


def reference_messages(body: bytes) -> list[int]:
    """Independent oracle: the offsets of the messages, walking total_len."""
    offsets = []
    pos = 0
    while pos < len(body):
        offsets.append(pos)
        pos += struct.unpack_from(">I", body, pos)[0]
    assert pos == len(body)
    return offsets


def test_eventstream_nova_recording() -> None:
    body = rec("bedrock_converse_stream_nova_tooluse.bin")
    frames = assert_invariant("eventstream", body, range(5, len(body), 97))
    assert len(frames) == 26 == len(reference_messages(body))
    assert [f.offset for f in frames] == reference_messages(body)
    first = frames[0]
    assert first.event == "messageStart"
    assert first.data == '{"p":"abcdefghijklmnopqrs","role":"assistant"}'
    assert dict(first.meta) == {":event-type": "messageStart",
                                ":content-type": "application/json",
                                ":message-type": "event"}
    assert [f.event for f in frames[-2:]] == ["messageStop", "metadata"]
    assert "contentBlockStart" in [f.event for f in frames]
    assert all(isinstance(json.loads(f.data), dict) for f in frames)


def test_eventstream_claude_reasoning_recording() -> None:
    body = rec("bedrock_converse_stream_claude_reasoning.bin")
    frames = assert_invariant("eventstream", body)
    assert [f.offset for f in frames] == reference_messages(body)
    deltas = [json.loads(f.data)["delta"] for f in frames if f.event == "contentBlockDelta"]
    assert any("reasoningContent" in d for d in deltas)
    assert any("signature" in d.get("reasoningContent", {}) for d in deltas)
    assert frames[-1].event == "metadata"


def test_eventstream_exception_recording() -> None:
    (frame,) = assert_invariant("eventstream", rec("bedrock_eventstream_exception_CONSTRUCTED.bin"))
    assert frame.event == "throttlingException"
    assert frame.meta[":message-type"] == "exception"
    assert json.loads(frame.data)["message"].startswith("Too many tokens")


def test_eventstream_error_message_type_and_all_header_types() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    headers = (
        string_header(":message-type", "error") + string_header(":error-code", "BadThing")
        + header("t", 0, b"") + header("f", 1, b"") + header("i8", 2, b"\xfe")
        + header("i16", 3, struct.pack(">h", -300)) + header("i32", 4, struct.pack(">i", 70000))
        + header("i64", 5, struct.pack(">q", -(2**40))) + header("b", 6, b"\x00\x03\x00\xff\x10")
        + header("ts", 8, struct.pack(">q", 1700000000123)) + header("u", 9, ident.bytes)
        + string_header("s", "\u00e9")
    )
    (frame,) = assert_invariant("eventstream", message(headers, b""))
    assert frame.event == "BadThing"
    assert frame.data == ""
    assert dict(frame.meta) == {
        ":message-type": "error", ":error-code": "BadThing", "t": "true", "f": "false",
        "i8": "-2", "i16": "-300", "i32": "70000", "i64": str(-(2**40)),
        "b": base64.b64encode(b"\x00\xff\x10").decode(), "ts": "1700000000123",
        "u": str(ident), "s": "\u00e9",
    }


def test_eventstream_several_messages_in_one_feed_and_offsets() -> None:
    body = event("a", '{"x":1}') + event("b", '{"\u00e9":"\U0001f5fc"}') + event("c", "{}")
    frames = assert_every_two_way_split("eventstream", body)
    assert [f.event for f in frames] == ["a", "b", "c"]
    assert [f.offset for f in frames] == reference_messages(body)


@FUZZ
@given(points=cuts)
def test_eventstream_hypothesis_splits(points: list[int]) -> None:
    body = b"".join(path.read_bytes() for path in BIN_RECORDINGS)
    assert len(run("eventstream", split(body, points))) == len(reference_messages(body))


def corrupt(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("index", [0, 5, 9])
def test_eventstream_bad_prelude_crc(index: int) -> None:
    err = raises("malformed_response", "eventstream", [corrupt(event("a", "{}"), index)])
    assert "prelude CRC" in err.message and "at byte 0" in err.message


@pytest.mark.parametrize("index", [12, 40, -5, -1])
def test_eventstream_bad_message_crc(index: int) -> None:
    good = event("a", "{}")
    body = good + corrupt(good, index % len(good))
    err = raises("malformed_response", "eventstream", bytewise(body))
    assert "message CRC" in err.message and f"at byte {len(good)}" in err.message


@pytest.mark.parametrize("cut", [1, 11, 12, 30, -1])
def test_eventstream_truncated_is_incomplete(cut: int) -> None:
    body = rec("bedrock_eventstream_exception_CONSTRUCTED.bin")
    raises("incomplete_stream", "eventstream", [event("a", "{}"), body[:cut]])


def test_eventstream_oversized_total_len_rejected_from_prelude() -> None:
    prelude = message(b"", b"", total=10**9)[:12]
    framer = make_framer("eventstream")
    with pytest.raises(EngineError) as info:
        framer.feed(prelude)
    assert info.value.kind == "malformed_response"


@pytest.mark.parametrize("total,headers_len", [(15, 0), (0, 0), (20, 5)])
def test_eventstream_insane_lengths(total: int, headers_len: int) -> None:
    prelude = struct.pack(">II", total, headers_len)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    raises("malformed_response", "eventstream", [prelude + b"\0" * 16])


@pytest.mark.parametrize("headers", [
    string_header("x", "1") + string_header("x", "2"),
    header("x", 10, b""),
    header("x", 7, b"\x00\x09abc"),
    header("x", 9, b"short"),
    b"\x05ab",
    header("\u00e9", 4, b"\x00\x00"),
    b"\x01\xff\x07\x00\x00",
    header("x", 7, b"\x00\x01\xff"),
])
def test_eventstream_bad_headers(headers: bytes) -> None:
    raises("malformed_response", "eventstream", [message(headers, b"{}")])


def test_eventstream_invalid_utf8_payload() -> None:
    raises("malformed_response", "eventstream", [message(string_header("x", "y"), b"\xff")])


# ---------------------------------------------------------------- max_frame_bytes

LIMIT = 64


@pytest.mark.parametrize("name,fits,first,more", [
    ("sse", b"data: " + b"x" * 56 + b"\n\n", b"data: " + b"y" * 40, b"y" * 40),
    ("sse", b"data: " + b"x" * 56 + b"\n\n", b"data: a\ndata: " + b"y" * 40, b"y" * 20),
    ("sse", b"data: " + b"x" * 56 + b"\n\n", b": " + b"c" * 40, b"c" * 40),
    ("ndjson", b"x" * 64 + b"\n", b"y" * 40, b"y" * 40),
    ("json-array", b'["' + b"x" * 62 + b'"]', b'[{"a":"' + b"y" * 40, b"y" * 40),
    ("json-array", b"[" + b"1" * 64 + b"]", b"[" + b"1" * 40, b"1" * 40),
    ("json", b"x" * 64, b"y" * 40, b"y" * 40),
])
def test_max_frame_bytes_raised_as_soon_as_exceeded(
    name: str, fits: bytes, first: bytes, more: bytes
) -> None:
    assert len(run(name, bytewise(fits), max_frame_bytes=LIMIT)) == 1
    framer = make_framer(name, max_frame_bytes=LIMIT)
    framer.feed(first)
    with pytest.raises(EngineError) as info:
        framer.feed(more)
    assert info.value.kind == "malformed_response"
    assert "max_frame_bytes=64" in info.value.message


@pytest.mark.parametrize("name,body", [
    ("sse", b"data: " + b"x" * 100 + b"\n\n"),
    ("sse", b"data: a\n" * 20 + b"\n"),
    ("sse", b": " + b"c" * 100 + b"\n\ndata: a\n\n"),
    ("ndjson", b"x" * 100 + b"\n"),
    ("json-array", b'[{"a": "' + b"x" * 100 + b'"}]'),
    ("json", b"x" * 100),
])
def test_max_frame_bytes_whole_feed(name: str, body: bytes) -> None:
    raises("malformed_response", name, [body], max_frame_bytes=LIMIT)


def test_max_frame_bytes_eventstream() -> None:
    small = event("a", "{}")
    assert len(run("eventstream", [small], max_frame_bytes=len(small))) == 1
    framer = make_framer("eventstream", max_frame_bytes=len(small) - 1)
    with pytest.raises(EngineError) as info:
        framer.feed(small[:12])
    assert info.value.kind == "malformed_response"


# ---------------------------------------------------------------- fuzz

SSE_TOKENS = [b"data:", b"data: ", b"event: e", b"id: 1", b"retry: 5", b":c", b"\r", b"\n",
              b"\r\n", b"x", "\u00e9".encode(), b"\xe2", b"\x00", b"\xef\xbb\xbf"]
JSON_TOKENS = [b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"1", b"a", b" ", b"\r\n",
               b"\xc3\xa9", b"\xef\xbb\xbf"]


@FUZZ
@given(tokens=st.lists(st.sampled_from(SSE_TOKENS), max_size=40), points=cuts)
def test_fuzz_sse_split_invariant(tokens: list[bytes], points: list[int]) -> None:
    body = b"".join(tokens)
    assert outcome("sse", split(body, points)) == outcome("sse", [body])


@FUZZ
@given(tokens=st.lists(st.sampled_from(JSON_TOKENS), max_size=40), points=cuts,
       name=st.sampled_from(["json-array", "ndjson", "json"]))
def test_fuzz_json_like_split_invariant(tokens: list[bytes], points: list[int], name: str) -> None:
    body = b"".join(tokens)
    assert outcome(name, split(body, points)) == outcome(name, [body])


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200), points=cuts, name=st.sampled_from(NAMES),
       limit=st.sampled_from([8, 64, DEFAULT_MAX_FRAME_BYTES]))
def test_fuzz_arbitrary_bytes_never_escape(
    body: bytes, points: list[int], name: str, limit: int
) -> None:
    for chunks in ([body], split(body, points)):
        result = outcome(name, chunks, max_frame_bytes=limit)
        assert isinstance(result, (list, str))


@FUZZ
@given(frames=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=30)), max_size=6),
       points=cuts)
def test_fuzz_eventstream_roundtrip(frames: list[tuple[str, str]], points: list[int]) -> None:
    body = b"".join(event(name, payload) for name, payload in frames)
    got = run("eventstream", split(body, points))
    assert [(f.event, f.data) for f in got] == frames


def test_events_before_invalid_utf8_arrive_however_the_bytes_are_cut() -> None:
    """A transport that hands over the whole body at once (aiohttp reads what is
    buffered) delivers the events before a bad one, exactly as one read per event does."""
    from engine.manifest.load import load_manifest
    from engine.protocol.decode import StreamDecoder

    def chunk(text: str) -> bytes:
        return b"data: " + json.dumps({"choices": [{"delta": {"content": text}}]}).encode() \
            + b"\n\n"

    body = chunk("fine") + chunk("@@").replace(b"@@", b"\xff\xfe\xc3")
    for cuts in ([body], [chunk("fine"), body[len(chunk("fine")):]]):
        decoder = StreamDecoder(load_manifest("openai"), "gpt-4o")
        texts: list[str] = []
        for piece in cuts:
            decoder.receive_data(piece)
        with pytest.raises(EngineError, match="invalid UTF-8 at byte 95"):
            while True:
                event = decoder.next_event()
                texts.append(event.as_content_delta.text)  # type: ignore[union-attr]
        assert texts == ["fine"]
