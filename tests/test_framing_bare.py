"""The sse-bare-json framer: SSE plus a bare JSON document outside any event."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.protocol.framing import make_framer

# Shape of the body logged in diegosouzapw/OmniRoute#4177: SSE events (CRLF),
# then the error envelope pretty-printed with no "data:" and no blank line.
BODY = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hel"}],"role": "model"}}]}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": "lo \xe2\x98\x83"}],"role": "model"}}]}'
    b"\r\n\r\n"
    b"{\n"
    b'  "error": {\n'
    b'    "code": 503,\n'
    b'    "message": "The model is overloaded. {braces} inside a string",\n'
    b'    "status": "UNAVAILABLE"\n'
    b"  }\n"
    b"}\n"
)


def frames(body: bytes, cuts=()) -> list:
    framer = make_framer("sse-bare-json")
    out, last = [], 0
    for cut in [*cuts, len(body)]:
        out += framer.feed(body[last:cut])
        last = cut
    return out + framer.close()


def test_events_then_bare_error():
    out = frames(BODY)
    assert [f.event for f in out] == [None, None, None]
    assert json.loads(out[0].data)["candidates"][0]["content"]["parts"][0]["text"] == "Hel"
    assert json.loads(out[2].data)["error"]["code"] == 503
    assert out[2].offset == BODY.index(b"{\n")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, len(BODY) - 1), max_size=12, unique=True).map(sorted))
def test_split_invariance(cuts):
    assert frames(BODY, cuts) == frames(BODY)


def test_byte_by_byte():
    assert frames(BODY, range(1, len(BODY))) == frames(BODY)


def test_bare_json_without_final_newline_and_unparsable_rest():
    assert json.loads(frames(b'{"error": {"code": 500}}')[0].data) == {"error": {"code": 500}}
    truncated = frames(b'data: {"a": 1}\n\n{\n  "error": {\n')
    assert truncated[-1].data == '{\n  "error": {'  # handed on; the decoder calls it incomplete


def test_plain_sse_unchanged():
    body = b'event: x\ndata: {"a": 1}\n\n: comment\nid: 7\ndata: 2\n\n'
    assert frames(body) == [f for f in make_framer("sse").feed(body)]


def test_bare_document_size_limit():
    framer = make_framer("sse-bare-json", max_frame_bytes=64)
    with pytest.raises(EngineError) as info:
        framer.feed(b"{\n" + b'  "k": "' + b"x" * 100 + b'",\n')
    assert info.value.kind == "malformed_response"
