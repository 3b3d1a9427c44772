"""The public promise at the edges (issue 12): everything raised is an EngineError.

Each case below was seen to escape as a foreign exception (or to be accepted silently) before
the one validation layer (``engine/inputs.py``) and the transport boundary existed. Wrong values
fail at the call that got them, as ``invalid_request`` naming the parameter; a closed client,
a second event loop, a key with a newline never reach httpx's own errors. The last tests drive
every public builder method and ``create`` argument with arbitrary values (hypothesis) and
assert that nothing but ``EngineError`` ever escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from answers import OPENAI_HI as ANSWER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import AiClient, EngineError, Limits, RetryPolicy, SyncAiClient, Timeouts
from engine.conformance.server import ReplayServer, ScriptedResponse

MODEL = "openai/gpt-4o-mini"
KEY = "sk-test-0123456789abcdef"
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def answering(sent: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ANSWER)
    return httpx.MockTransport(handle)


def sync_client(sent: list[httpx.Request] | None = None, **kwargs: Any) -> SyncAiClient:
    http = httpx.Client(transport=answering(sent if sent is not None else []))
    return SyncAiClient.create(MODEL, api_key=KEY, http_client=http, **kwargs)


def invalid(call: Callable[[], Any], *words: str) -> EngineError:
    with pytest.raises(EngineError) as caught:
        call()
    error = caught.value
    assert error.kind == "invalid_request" and error.retryable is False, repr(error)
    for word in words:
        assert word in error.message, (word, error.message)
    return error


# ---------------------------------------------------------------- builder arguments

@pytest.mark.parametrize(("method", "value", "words"), [
    ("user", 123, ("user text must be a str", "got int 123")),
    ("system", None, ("system text must be a str", "NoneType")),
    ("stop", 5, ("stop must be", "got int 5")),
    ("stop", [""], ("stop must be",)),
    ("extra_body", [1, 2], ("extra_body must be a mapping", "got list")),
    ("temperature", math.nan, ("temperature must be a finite number", "nan")),
    ("temperature", -5, ("temperature must be between 0.0 and 2.0", "-5")),
    ("temperature", "0.5", ("temperature must be a number", "got str")),
    ("top_p", 1.5, ("top_p must be between 0.0 and 1.0",)),
    ("max_tokens", 0, ("max_tokens must be between 1",)),
    ("max_tokens", True, ("max_tokens must be an int", "got bool")),
    ("seed", 1.5, ("seed must be an int",)),
    ("messages", "hello", ("messages must be a list",)),
    ("tools", {"name": "x"}, ("tools must be a list",)),
    ("headers", {"x-a": "b\r\nevil: 1"}, ("without control characters",)),
    ("headers", {"bad name": "v"}, ("not a valid HTTP header name",)),
    ("timeout", "10", ("timeout must be a number of seconds", "got str")),
    ("timeout", -1, ("timeout must be a finite number of seconds > 0",)),
])
def test_builder_refuses_a_bad_value_at_the_call(method: str, value: Any,
                                                 words: tuple[str, ...]) -> None:
    with sync_client() as client:
        chat = client.chat()
        invalid(lambda: getattr(chat, method)(value), *words)


def test_retry_overrides_are_checked_by_name_and_value() -> None:
    with sync_client() as client:
        chat = client.chat()
        invalid(lambda: chat.retry(max_retrys=3), "did you mean 'max_retries'")
        invalid(lambda: chat.retry(retry_on={"bogus"}), "retry_on entry must be one of")
        invalid(lambda: chat.retry(retry_on={"rate_limted"}), "did you mean 'rate_limited'")
        invalid(lambda: chat.retry(max_retries=-1), "max_retries must be between 0 and 100")


def test_retry_policy_checks_itself() -> None:
    invalid(lambda: RetryPolicy(max_retries="x"), "max_retries must be an int")  # type: ignore[arg-type]
    invalid(lambda: RetryPolicy(retry_on="timeout"), "retry_on must be a set")  # type: ignore[arg-type]
    invalid(lambda: RetryPolicy(backoff_base=math.inf), "backoff_base must be a finite")
    assert RetryPolicy(retry_on=["timeout"]).retry_on == frozenset({"timeout"})  # type: ignore[arg-type]


def test_tool_choice_must_be_a_mode_or_a_declared_tool() -> None:
    with sync_client() as client:
        invalid(lambda: client.chat().user("hi").tools([WEATHER]).tool_choice("requried")
                .execute(), "'requried' is neither a mode", "did you mean 'required'")
        invalid(lambda: client.chat().user("hi").tool_choice("sometimes").execute(),
                "'sometimes' is neither a mode", "declared: none")
        invalid(lambda: client.chat().user("hi").tools([WEATHER])
                .tool_choice({"name": "get_wether"}).execute(), "did you mean 'get_weather'")


def test_a_named_declared_tool_is_forced() -> None:
    sent: list[httpx.Request] = []
    with sync_client(sent) as client:
        client.chat().user("hi").tools([WEATHER]).tool_choice("get_weather").execute()
    body = json.loads(sent[0].content)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


# ---------------------------------------------------------------- create arguments

@pytest.mark.parametrize(("kwargs", "words"), [
    ({"api_key": 123}, ("api_key must be a str, a mapping", "got int"),),
    ({"api_key": "clé-secrète"}, ("contains a non-ASCII character",)),
    ({"api_key": {"openai": 5}}, ("api_key['openai'] must be a str",)),
    ({"timeout": -1}, ("timeout must be a finite number of seconds > 0",)),
    ({"timeout": "10"}, ("timeout must be a number of seconds",)),
    ({"max_retries": -1}, ("max_retries must be between 0 and 100",)),
    ({"retry": {"max_retries": 1}}, ("retry must be a RetryPolicy",)),
    ({"limits": 5}, ("limits must be a Limits",)),
    ({"base_url": "ftp://host/v1"}, ("must be an absolute http:// or https:// URL",)),
    ({"base_url": "http://127.0.0.1\x00/v1"}, ("whitespace or control characters",)),
    ({"base_url": "http://[::1/v1"}, ("is not a valid URL",)),
    ({"base_url": "http://127.0.0.1:99999/v1"}, ("is not a valid URL",)),
    ({"base_url": "https://user:pw@example.test/v1"}, ("carries credentials",)),
])
def test_create_refuses_a_bad_argument(kwargs: dict[str, Any], words: tuple[str, ...]) -> None:
    error = invalid(lambda: SyncAiClient.create(MODEL, **{"api_key": KEY, **kwargs}), *words)
    assert "clé-secrète" not in repr(error) and "pw@" not in str(error)


def test_create_refuses_bad_model_ids() -> None:
    invalid(lambda: SyncAiClient.create(None), "model must be 'provider/model'")  # type: ignore[arg-type]
    invalid(lambda: SyncAiClient.create([]), "non-empty list")
    invalid(lambda: SyncAiClient.create("openai/" + "m" * 100_000, api_key=KEY),
            "100007 characters long")
    invalid(lambda: SyncAiClient.create("openai/gpt 4o", api_key=KEY), "whitespace")


def test_http_client_of_the_wrong_kind() -> None:
    invalid(lambda: SyncAiClient.create(MODEL, api_key=KEY, http_client=httpx.AsyncClient()),
            "http_client must be an httpx.Client")

    async def main() -> None:
        await AiClient.create(MODEL, api_key=KEY, http_client=httpx.Client())  # type: ignore[arg-type]
    with pytest.raises(EngineError, match=r"must be an httpx\.AsyncClient"):
        asyncio.run(main())


def test_limits_check_themselves() -> None:
    invalid(lambda: Limits(max_in_flight=0), "max_in_flight must be an int >= 1")
    invalid(lambda: Timeouts(read=math.nan), "timeout read must be a finite number")


# ---------------------------------------------------------------- closed clients, loops

def test_a_closed_sync_client_says_so() -> None:
    client = sync_client()
    client.close()
    invalid(lambda: client.chat().user("hi").execute(), "the client is closed")
    invalid(lambda: list(client.chat().user("hi").stream()), "the client is closed")


async def test_a_closed_async_client_says_so() -> None:
    async with await AiClient.create(MODEL, api_key=KEY, http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json=ANSWER)))) as c:
        assert (await c.chat().user("hi").execute()).content == "hi"
    with pytest.raises(EngineError, match="the client is closed") as caught:
        await c.chat().user("hi").execute()
    assert caught.value.kind == "invalid_request"


def test_a_user_closed_http_client_is_an_engine_error() -> None:
    http = httpx.Client(transport=answering([]))
    client = SyncAiClient.create(MODEL, api_key=KEY, http_client=http)
    http.close()
    invalid(lambda: client.chat().user("hi").execute(), "the client is closed")


def test_one_client_across_two_event_loops() -> None:
    """``asyncio.run`` twice with one client: its own pool is renewed for the new loop."""
    with ReplayServer(lambda request: ScriptedResponse.json(ANSWER)) as server:
        async def create() -> AiClient:
            client = await AiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1")
            assert (await client.chat().user("one").execute()).content == "hi"
            return client

        client = asyncio.run(create())

        async def again() -> str | None:
            try:
                return (await client.chat().user("two").execute()).content
            finally:
                await client.aclose()

        assert asyncio.run(again()) == "hi"
        assert [r.json()["messages"][0]["content"] for r in server.requests] == ["one", "two"]


def test_a_shared_http_client_in_another_loop_is_refused_clearly() -> None:
    with ReplayServer(lambda request: ScriptedResponse.json(ANSWER)) as server:
        http = httpx.AsyncClient()

        async def first() -> AiClient:
            client = await AiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1",
                                           http_client=http)
            await client.chat().user("one").execute()
            return client

        client = asyncio.run(first())

        async def second() -> None:
            await client.chat().user("two").execute()
        with pytest.raises(EngineError, match="belongs to another event loop"):
            asyncio.run(second())


# ---------------------------------------------------------------- keys, headers, timeouts

def test_key_from_a_file_with_its_newline_is_refused_before_any_request() -> None:
    sent: list[httpx.Request] = []
    error = invalid(lambda: SyncAiClient.create(
        MODEL, api_key=KEY + "\n", http_client=httpx.Client(transport=answering(sent))),
        "contains a line break")
    assert sent == [] and KEY not in str(error)


def test_key_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "\n")
    invalid(lambda: SyncAiClient.create(MODEL), "the API key ($OPENAI_API_KEY) contains a line")


@pytest.mark.parametrize("key", ["k", "abc", "sk-12345", "0123456789ab"])
def test_short_keys_never_appear_in_errors(key: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {
            "message": f"Incorrect API key provided: {key}. Find your key at ...",
            "type": "invalid_request_error", "code": "invalid_api_key"}})
    http = httpx.Client(transport=httpx.MockTransport(handle))
    with SyncAiClient.create(MODEL, api_key=key, http_client=http) as client, \
            pytest.raises(EngineError) as caught:
        client.chat().user("hi").execute()
    error = caught.value
    assert error.kind == "authentication"
    for text in (str(error), repr(error), error.message):
        assert f" {key}." not in text and "[REDACTED]" in text, text


def test_per_call_headers_are_sent_and_cannot_replace_auth() -> None:
    sent: list[httpx.Request] = []
    with sync_client(sent) as client:
        client.chat().user("hi").headers({"X-Beta": "tools-2026", "User-Agent": "app/1"}).execute()
        assert sent[0].headers["x-beta"] == "tools-2026"
        assert sent[0].headers["user-agent"] == "app/1"
        assert sent[0].headers["authorization"] == f"Bearer {KEY}"
        invalid(lambda: client.chat().user("hi").headers({"Authorization": "Bearer x"})
                .execute(), "carries the credentials")
        invalid(lambda: client.chat().user("hi").headers({"Content-Length": "1"}).execute(),
                "set by the HTTP layer")
    assert len(sent) == 1


def test_a_local_protocol_error_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.LocalProtocolError("Illegal header value")
    http = httpx.Client(transport=httpx.MockTransport(handle))
    with SyncAiClient.create(MODEL, api_key=KEY, http_client=http, max_retries=3) as client:
        invalid(lambda: client.chat().user("hi").execute(), "could not be sent")
    assert len(calls) == 1


def test_connect_timeouts_are_retried_read_timeouts_are_not() -> None:
    for exc, attempts in ((httpx.ConnectTimeout("slow"), 3), (httpx.ReadTimeout("slow"), 1)):
        calls: list[httpx.Request] = []

        def handle(request: httpx.Request, exc: Exception = exc,
                   calls: list[httpx.Request] = calls) -> httpx.Response:
            calls.append(request)
            raise exc
        http = httpx.Client(transport=httpx.MockTransport(handle))
        policy = RetryPolicy(max_retries=2, backoff_base=0.0, backoff_max=0.0)
        with SyncAiClient.create(MODEL, api_key=KEY, http_client=http, retry=policy) as client, \
                pytest.raises(EngineError) as caught:
            client.chat().user("hi").execute()
        assert caught.value.kind == "timeout" and len(calls) == attempts
        assert caught.value.attempts == attempts


def test_default_timeouts_follow_the_official_sdks() -> None:
    assert Timeouts() == Timeouts(connect=5.0, read=600.0, write=600.0, pool=10.0, total=None)
    with sync_client() as client:
        assert client._transport.timeouts == Timeouts()


def test_per_call_timeout_applies() -> None:
    with ReplayServer(lambda request: ScriptedResponse(fault="hang_before_headers")) as server, \
            SyncAiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1") as client, \
            pytest.raises(EngineError) as caught:
        client.chat().user("hi").timeout(0.3).execute()
    assert caught.value.kind == "timeout"
    assert "read timeout of 0.3s" in caught.value.message


# ---------------------------------------------------------------- nothing else escapes

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.binary(max_size=8), st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5),
                                                   st.none()), max_size=3),
    st.just(math.nan), st.just(-math.inf), st.just(object()))
BUILDER_METHODS = ["system", "user", "assistant", "tool", "message", "messages", "temperature",
                   "top_p", "max_tokens", "seed", "stop", "tools", "tool_choice", "extra_body",
                   "headers", "timeout"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(BUILDER_METHODS), anything), max_size=6),
       st.booleans())
def test_builder_methods_raise_only_engine_errors(calls: list[tuple[str, Any]],
                                                  stream: bool) -> None:
    sent: list[httpx.Request] = []
    with sync_client(sent) as client:
        chat = client.chat()
        for method, value in calls:
            try:
                if method == "tool":
                    chat.tool(value, value)
                else:
                    getattr(chat, method)(value)
            except EngineError:
                pass
        try:
            if stream:
                list(chat.stream())
            else:
                chat.execute()
        except EngineError:
            pass


CREATE_ARGS = ["api_key", "base_url", "max_retries", "timeout", "http_client", "retry",
               "clock", "limits"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(anything, st.just(MODEL), st.just([MODEL, "nosuch/x"])),
       st.dictionaries(st.sampled_from(CREATE_ARGS), anything, max_size=4))
def test_create_raises_only_engine_errors(model: Any, kwargs: dict[str, Any]) -> None:
    with contextlib.suppress(EngineError):
        SyncAiClient.create(model, **kwargs).close()


# ---------------------------------------------------------------- base URL from the environment

def test_base_url_from_the_manifests_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with ReplayServer(lambda request: ScriptedResponse.json(ANSWER)) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/proxy/v1")
        with SyncAiClient.create(MODEL, api_key=KEY) as client:
            assert client.chat().user("hi").execute().content == "hi"
        with SyncAiClient.create(MODEL, api_key=KEY, base_url=server.url + "/v1") as client:
            client.chat().user("hi").execute()  # an explicit base_url wins
        assert [r.url_path for r in server.requests] == ["/proxy/v1/chat/completions",
                                                          "/v1/chat/completions"]
    monkeypatch.setenv("OPENAI_BASE_URL", "not a url")
    invalid(lambda: SyncAiClient.create(MODEL, api_key=KEY), "$OPENAI_BASE_URL")


def test_a_child_with_its_own_host_inherits_no_key_variable(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``extends: openai`` with another base_url must not send $OPENAI_API_KEY there."""
    (tmp_path / "elsewhere.yaml").write_text(
        "manifest: 1\nid: elsewhere\nextends: openai\nbase_url: https://llm.example.test/v1\n")
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(EngineError) as caught:
        SyncAiClient.create("elsewhere/m")
    assert caught.value.problems == [  # type: ignore[attr-defined]
        f"{tmp_path / 'elsewhere.yaml'}:4: base_url: a manifest with its own base_url inherits "
        "no auth.env (a key variable belongs to its host): name this provider's own key "
        "variable in auth.env"]
    (tmp_path / "elsewhere.yaml").write_text(
        "manifest: 1\nid: elsewhere\nextends: openai\nbase_url: https://llm.example.test/v1\n"
        "auth: {scheme: bearer, env: [ELSEWHERE_API_KEY]}\n")
    client = SyncAiClient.create("elsewhere/m")
    assert client.manifest.auth.env == ("ELSEWHERE_API_KEY",)
    assert client.manifest.base_url_env == ()
    assert client.manifest.models == {}  # openai's catalogue is openai's host's
    assert client._chain.primary.base_url is None  # not $OPENAI_BASE_URL
    with pytest.raises(EngineError, match="no API key for elsewhere") as missing:
        client.chat().user("hi").execute()
    assert missing.value.kind == "authentication"
