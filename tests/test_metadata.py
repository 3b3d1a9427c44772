"""Response metadata (issue 10, item 5): resp.headers, stats.request_id, stats.rate_limit.

The reading rules are tested on the sans-I/O functions with header values as providers send
them (counts, durations such as "6m0s", RFC 3339 and HTTP-date reset times); the plumbing
through the client with a MockTransport: headers on plain and streamed answers, cookies
dropped, the key redacted wherever a header echoes it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
from answers import OPENAI_HI as ANSWER

from engine import SyncAiClient
from engine.manifest.model import HeaderFacts
from engine.protocol.metadata import public_headers, rate_limit, request_id
from engine.types import RateLimit

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)
FACTS = HeaderFacts(
    request_id=("x-request-id", "request-id"),
    rate_limit={"requests_limit": ("x-ratelimit-limit-requests",),
                "requests_remaining": ("x-ratelimit-remaining-requests",),
                "requests_reset": ("x-ratelimit-reset-requests",),
                "tokens_remaining": ("x-ratelimit-remaining-tokens",
                                     "anthropic-style-tokens-remaining"),
                "tokens_reset": ("x-ratelimit-reset-tokens",)})
KEY = "sk-metadata-0123456789"


def test_request_id_first_named_header_present() -> None:
    assert request_id(FACTS, {"request-id": "req_2", "x-request-id": "req_1"}) == "req_1"
    assert request_id(FACTS, {"request-id": " req_2 "}) == "req_2"
    assert request_id(FACTS, {}) is None
    assert request_id(HeaderFacts(), {"x-request-id": "r"}) is None


def test_rate_limit_values_as_providers_send_them() -> None:
    headers = {"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
               "x-ratelimit-reset-requests": "6m0s", "anthropic-style-tokens-remaining": "7",
               "x-ratelimit-reset-tokens": "2026-12-03T12:00:30Z"}
    assert rate_limit(FACTS, headers, NOW) == RateLimit(
        requests_limit=10000, requests_remaining=9999, requests_reset=360.0,
        tokens_remaining=7, tokens_reset=30.0)
    assert rate_limit(FACTS, {"x-ratelimit-reset-requests": "120ms"}, NOW) == RateLimit(
        requests_reset=0.12)
    assert rate_limit(FACTS, {"x-ratelimit-reset-tokens": "Thu, 03 Dec 2026 12:01:00 GMT"},
                      NOW) == RateLimit(tokens_reset=60.0)


def test_unreadable_values_are_none_and_nothing_named_is_none() -> None:
    assert rate_limit(FACTS, {"x-ratelimit-remaining-requests": "lots"}, NOW) == RateLimit()
    assert rate_limit(FACTS, {}, NOW) is None
    assert rate_limit(HeaderFacts(), {"x-ratelimit-remaining-requests": "1"}, NOW) is None


def test_public_headers_drop_cookies_and_redact() -> None:
    from engine.errors import register_secret
    register_secret(KEY)
    out = public_headers({"set-cookie": "session=abc", "x-echo": f"key {KEY}", "a": "b"})
    assert out == {"x-echo": "key [REDACTED]", "a": "b"}


def test_client_answers_carry_their_headers() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        headers = {"x-request-id": "req_abc", "set-cookie": "__cf_bm=secret", "x-echo": KEY}
        if b'"stream":true' in request.content:
            body = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"},'
                    b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
            return httpx.Response(200, headers={**headers, "content-type": "text/event-stream"},
                                  content=body)
        return httpx.Response(200, headers=headers, json=ANSWER)
    http = httpx.Client(transport=httpx.MockTransport(handle))
    with SyncAiClient.create("openai/gpt-4o-mini", api_key=KEY, http_client=http) as client:
        plain = client.chat().user("hi").execute()
        stream = client.chat().user("hi").stream()
        for _ in stream:
            pass
    for response in (plain, stream.response):
        assert response.headers["x-request-id"] == "req_abc"
        assert "set-cookie" not in response.headers
        assert response.headers["x-echo"] == "[REDACTED]"


def test_stats_read_the_headers_the_manifests_name() -> None:
    """Header names and value forms as the providers document them (openai: the rate-limits
    guide's example values; anthropic: RFC 3339 resets, its rate-limits page)."""
    openai_headers = {"x-request-id": "req_7f1c", "x-ratelimit-limit-requests": "60",
                      "x-ratelimit-remaining-requests": "59",
                      "x-ratelimit-reset-requests": "1s",
                      "x-ratelimit-limit-tokens": "150000",
                      "x-ratelimit-remaining-tokens": "149984",
                      "x-ratelimit-reset-tokens": "6m0s"}
    http = httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, headers=openai_headers, json=ANSWER)))
    with SyncAiClient.create("openai/gpt-4o-mini", api_key=KEY, http_client=http) as client:
        _, stats = client.chat().user("hi").execute_with_stats()
    assert stats.request_id == "req_7f1c"
    assert stats.rate_limit == RateLimit(requests_limit=60, requests_remaining=59,
                                         requests_reset=1.0, tokens_limit=150000,
                                         tokens_remaining=149984, tokens_reset=360.0)

    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
              "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
              "usage": {"input_tokens": 3, "output_tokens": 1}}
    reset = "2099-01-01T00:00:00Z"
    anthropic_headers = {"request-id": "req_011C", "anthropic-ratelimit-requests-limit": "50",
                         "anthropic-ratelimit-requests-remaining": "49",
                         "anthropic-ratelimit-requests-reset": reset}
    http = httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, headers=anthropic_headers, json=answer)))
    with SyncAiClient.create("anthropic/claude-sonnet-4-5-20250929", api_key=KEY,
                             http_client=http) as client:
        _, stats = client.chat().user("hi").execute_with_stats()
    assert stats.request_id == "req_011C"
    assert stats.rate_limit is not None
    assert (stats.rate_limit.requests_limit, stats.rate_limit.requests_remaining) == (50, 49)
    assert stats.rate_limit.requests_reset is not None and stats.rate_limit.requests_reset > 1e8
    assert stats.rate_limit.tokens_remaining is None
