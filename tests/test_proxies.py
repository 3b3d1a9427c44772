"""Proxies from the environment, the same for both transports: HTTP_PROXY sends the
request to the proxy (an absolute request target), NO_PROXY sends it straight on.

The "proxy" is a second loopback ReplayServer: it records the request it is handed,
so the test sees where the bytes went without a real proxy."""

from __future__ import annotations

import json

import pytest

from engine import AiClient, SyncAiClient
from engine.conformance.server import ReplayServer, ScriptedResponse

ANSWER = ScriptedResponse(
    200, [("content-type", "application/json")],
    [json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"},
                              "finish_reason": "stop"}]}).encode()])


async def _call(transport: str, base_url: str) -> str:
    if transport == "sync":
        with SyncAiClient.create("openai/gpt-4o", api_key="sk-test", base_url=base_url) as c:
            return c.chat().user("Hi").execute().content
    client = await AiClient.create("openai/gpt-4o", api_key="sk-test", base_url=base_url,
                                   transport=transport)
    async with client:
        return (await client.chat().user("Hi").execute()).content


@pytest.mark.parametrize("transport", ["sync", "httpx", "aiohttp"])
@pytest.mark.parametrize("bypass", [False, True])
async def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(
        transport: str, bypass: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if transport == "aiohttp":
        pytest.importorskip("aiohttp")
    with ReplayServer(lambda _r: ANSWER) as target, ReplayServer(lambda _r: ANSWER) as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                     "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert await _call(transport, target.url + "/v1") == "hi"
        went_to, other = (target, proxy) if bypass else (proxy, target)
        assert len(went_to.requests) == 1 and other.requests == []
        expected = "/v1/chat/completions" if bypass else target.url + "/v1/chat/completions"
        assert went_to.requests[0].path == expected
