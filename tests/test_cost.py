"""stats.cost_usd from usage and the catalogue's prices (issue 8, item 4; issue 10's hooks).

Prices are USD per million tokens in the manifest's ``models`` entries; cached prompt tokens
are charged at ``cached_input_price``; an unlisted or unpriced model has no cost, and
``create`` never needs the catalogue to call a model.
"""

from __future__ import annotations

import httpx
import pytest

from engine import SyncAiClient
from engine.hooks import CallInfo
from engine.manifest import load_manifest

KEY = "sk-cost-0123456789abcdef"


def answer(model: str, prompt: int, completion: int, cached: int) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}}


def test_the_arithmetic() -> None:
    manifest = load_manifest("openai")
    # gpt-4o-mini: 0.15 in, 0.075 cached in, 0.60 out, per million tokens
    assert manifest.cost_usd("gpt-4o-mini", 1000, 500, 200) == pytest.approx(
        (800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6)
    assert manifest.cost_usd("gpt-4o-mini", 1000, 500, None) == pytest.approx(
        (1000 * 0.15 + 500 * 0.6) / 1e6)
    assert manifest.cost_usd("gpt-4o", 1000, 500, 0) is None  # listed, not priced
    assert manifest.cost_usd("no-such-model", 1000, 500, 0) is None
    assert manifest.cost_usd("gpt-4o-mini", None, 500, 0) is None
    anthropic = load_manifest("anthropic")
    assert anthropic.cost_usd("claude-sonnet-5-5", 2_000_000, 100_000, 1_000_000) == \
        pytest.approx(1.0 * 2.0 + 1.0 * 0.2 + 0.1 * 10.0)


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o-mini", (800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6),
    ("my-fine-tune", None),
])
def test_stats_and_hooks_carry_the_cost(model: str, expected: float | None) -> None:
    seen: list[CallInfo] = []

    class Hook:
        def on_response(self, info: CallInfo) -> None:
            seen.append(info)

    http = httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json=answer(model, 1000, 500, 200))))
    with SyncAiClient.create(f"openai/{model}", api_key=KEY, http_client=http,
                             hooks=[Hook()]) as client:
        _, stats = client.chat().user("hi").execute_with_stats()
    if expected is None:
        assert stats.cost_usd is None and seen[0].cost_usd is None
    else:
        assert stats.cost_usd == pytest.approx(expected)
        assert seen[0].cost_usd == pytest.approx(expected)
