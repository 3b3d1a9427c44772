"""Error classification, retry hints and the retry policy (pure parts)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from engine.errors import KINDS, EngineError, redact, register_secret
from engine.manifest import load_manifest
from engine.protocol.classify import classify
from engine.retry import RetryPolicy, parse_duration, parse_retry_value


def body(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("text, seconds", [
    ("34.4s", 34.4), ("120ms", 0.12), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("0s", 0.0),
    ("2", None), ("s", None), ("3 apples", None), ("1m and 2s", None),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_retry_value_forms():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_value("7") == 7.0
    assert parse_retry_value("1500", "ms") == 1.5
    assert parse_retry_value(2, "s") == 2.0
    assert parse_retry_value("34.4s") == pytest.approx(34.4)
    assert parse_retry_value("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_value("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    for junk in (None, "", "soon", True, -3, [1]):
        assert parse_retry_value(junk) is None


def test_policy_backoff_is_bounded_and_honours_hints():
    policy = RetryPolicy(max_retries=5, backoff_base=0.5, backoff_max=4.0, max_retry_after=30)
    err = EngineError("server_error", "boom")
    rng = random.Random(7)
    for attempt in range(8):
        delay = policy.delay(err, attempt, rng)
        assert 0.0 <= delay <= min(4.0, 0.5 * 2**attempt)
    hinted = EngineError("rate_limited", "slow down", retry_after=12.0)
    assert policy.delay(hinted, 0) == 12.0
    assert policy.should_retry(hinted, 0)
    too_long = EngineError("rate_limited", "slow down", retry_after=300.0)
    assert not policy.should_retry(too_long, 0)
    assert not RetryPolicy(honor_retry_after=False).should_retry(err, 2)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_only_transient_kinds_retry_by_default(kind):
    retry = RetryPolicy().should_retry(EngineError(kind, "x"), 0)
    assert retry == (kind in {"rate_limited", "overloaded", "server_error", "timeout",
                              "connection"})


def test_policy_overrides():
    policy = RetryPolicy().with_overrides(max_retries=0, retry_on=["timeout"])
    assert policy.max_retries == 0 and policy.retry_on == frozenset({"timeout"})
    with pytest.raises(EngineError, match="did you mean 'max_retries'") as caught:
        RetryPolicy().with_overrides(retires=3)
    assert caught.value.kind == "invalid_request"


def test_openai_rate_limit_and_quota():
    m = load_manifest("openai")
    rate = classify(m, 429, {"retry-after": "2"}, body({"error": {
        "message": "Rate limit reached for gpt-4o ... Please try again in 2s.", "type": "tokens",
        "param": None, "code": "rate_limit_exceeded"}}))
    assert (rate.kind, rate.retryable, rate.retry_after, rate.status) == (
        "rate_limited", True, 2.0, 429)
    quota = classify(m, 429, {}, body({"error": {
        "message": "You exceeded your current quota", "type": "insufficient_quota",
        "param": None, "code": "insufficient_quota"}}))
    assert (quota.kind, quota.retryable) == ("quota_exhausted", False)


def test_retry_hint_order_and_message_fallback():
    m = load_manifest("openai")
    both = classify(m, 429, {"retry-after-ms": "250", "retry-after": "9"}, body({"error": {
        "message": "x", "code": "rate_limit_exceeded"}}))
    assert both.retry_after == 0.25
    in_text = classify(m, 429, {}, body({"error": {
        "message": "Please try again in 1.5s.", "code": "rate_limit_exceeded"}}))
    assert in_text.retry_after == 1.5


def test_gemini_retry_delay_in_body():
    m = load_manifest("gemini")
    err = classify(m, 429, {}, body({"error": {
        "code": 429, "message": "You exceeded your current quota, please check your plan.",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"}]}}))
    assert (err.kind, err.retry_after) == ("rate_limited", pytest.approx(34.4))


def test_should_retry_header_forces_the_decision():
    m = load_manifest("anthropic")
    payload = body({"type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert classify(m, 529, {}, payload).retryable is True
    assert classify(m, 529, {"x-should-retry": "false"}, payload).retryable is False
    bad = body({"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
    assert classify(m, 400, {"x-should-retry": "true"}, bad).retryable is True


def test_non_json_error_bodies():
    m = load_manifest("openai")
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = classify(m, 502, {}, html)
    assert err.kind == "server_error" and "502 Bad Gateway" in err.message
    assert classify(m, 500, {}, b"").message == "HTTP 500 with an empty body"
    assert classify(m, 418, {}, b"{}").kind == "invalid_request"


def test_status_defaults_when_no_rule_matches():
    m = load_manifest("openai")
    expect = {400: "invalid_request", 401: "authentication", 403: "permission_denied",
              404: "not_found", 408: "timeout", 413: "invalid_request", 429: "rate_limited",
              500: "server_error", 503: "overloaded", 504: "timeout", 599: "server_error"}
    for status, kind in expect.items():
        assert classify(m, status, {}, b"{}").kind == kind, status


def test_secrets_are_redacted_everywhere():
    register_secret("sk-sentinel-0123456789")
    err = EngineError("authentication", "Incorrect API key provided: sk-sentinel-0123456789",
                      code="sk-sentinel-0123456789")
    for text in (str(err), repr(err), err.message, err.code or ""):
        assert "sk-sentinel-0123456789" not in text
    assert redact("key=sk-sentinel-0123456789!") == "key=[REDACTED]!"


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        EngineError("teapot", "x")  # type: ignore[arg-type]


def test_a_key_cut_by_an_excerpt_is_still_redacted():
    register_secret("sk-live-FRAGMENT-0123456789abcdef")
    cut = "Bearer sk-live-FRAGMENT-0123"  # an excerpt that ends inside the key
    assert redact(cut) == "Bearer [REDACTED]"
    assert "FRAGMENT" not in redact("x sk-live-FRAGMENT-01234' y")
    assert redact("sk-live-FRA") == "sk-live-FRA"  # shorter than a fragment: left alone


def test_should_retry_header_forces_retry_of_any_kind():
    forced = EngineError("invalid_request", "try later")
    forced.retry_forced = True
    assert RetryPolicy(max_retries=1).should_retry(forced, 0)
    assert not RetryPolicy(max_retries=1).should_retry(forced, 1)
    refused = EngineError("overloaded", "busy")
    refused.retry_forced = False
    assert not RetryPolicy(max_retries=3).should_retry(refused, 0)


def test_engine_errors_survive_pickle_and_copy():
    import copy
    import pickle

    from engine.errors import ManifestError
    from engine.types import ChatResponse, Usage

    partial = ChatResponse("so far", None, [], "other", Usage(1, 2, 3), raw=[{"a": 1}])
    error = EngineError("rate_limited", "slow down", status=429, provider="openai",
                        retry_after=2.5, code="rate_limit_exceeded", partial=partial)
    error.attempts = 3
    manifest_error = ManifestError("bad", problems=["f.yaml:1: id: bad"], provider="x",
                                   key=("id",), detail="bad")
    for original in (error, manifest_error):
        for clone in (pickle.loads(pickle.dumps(original)), copy.copy(original),
                      copy.deepcopy(original)):
            assert type(clone) is type(original)
            assert clone.__dict__ == original.__dict__
            assert str(clone) == str(original) and clone.args == original.args
    clone = pickle.loads(pickle.dumps(error))
    assert clone.partial.content == "so far" and clone.attempts == 3 and clone.retryable
