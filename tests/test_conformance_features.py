"""Which features a fixture exercises, and how a manifest offers each (the feature table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.conformance.features import FEATURES, features_of, offer, refusable
from engine.conformance.fixture import Fixture
from engine.manifest.load import load_manifest

pytestmark = pytest.mark.fast


def fixture(request: dict[str, Any], operation: str = "chat") -> Fixture:
    data = {"provider": "p", "scenario": "s", "operation": operation, "request": request}
    return Fixture(Path("p/s.yaml"), data, ())


def test_features_are_read_from_the_request_wherever_the_fixture_is_filed() -> None:
    assert features_of(fixture({"messages": [{"role": "user", "content": "hi"}]})) == set()
    parts = [{"type": "text", "text": "a", "cache": True}, {"type": "image", "url": "u"},
             {"type": "audio", "data_base64": "AA=="}]
    assert features_of(fixture({"messages": [{"role": "user", "content": parts}]})) == {
        "image", "audio", "cache"}
    replayed = {"role": "assistant", "content": "", "replay": [{"type": "thinking"}],
                "cache": True}
    assert features_of(fixture({"messages": [replayed], "reasoning": {"effort": "low"}})) == {
        "replay", "cache", "reasoning"}
    tool_turn = {"role": "assistant", "content": "", "thinking": "t",
                 "tool_calls": [{"id": "1", "name": "f", "arguments": {}}]}
    assert features_of(fixture({"messages": [tool_turn]})) == {"replay"}  # its thinking text
    assert features_of(fixture({"messages": [{**tool_turn, "tool_calls": []}]})) == set()
    schema = {"schema": {"type": "object"}}
    assert features_of(fixture({"messages": [], "response_format": schema})) == {"structured"}
    assert features_of(fixture({"messages": [], "response_format": schema, "stream": True})) == {
        "structured_stream"}
    assert features_of(fixture({"messages": [], "response_format": {"json": True}})) == {"json"}
    assert features_of(fixture({"messages": [], "cache_tools": True})) == {"cache"}
    assert features_of(fixture({"inputs": ["x"]}, operation="embed")) == set()


@pytest.mark.parametrize(("provider", "feature", "how"), [
    ("anthropic", "document", "native"),
    ("anthropic", "json", "none"),
    ("anthropic", "replay", "native"),
    ("anthropic", "cache", "native"),
    ("openai", "audio", "native"),         # only through its audio models' override
    ("openai", "cache", "automatic"),
    ("openai", "replay", "n/a"),
    ("bedrock", "json", "emulated"),        # a forced tool call carries the answer
    ("bedrock", "structured", "native"),    # native on the models of one override
    ("deepseek", "image", "none"),
])
def test_offer_reads_the_capabilities_of_the_manifest_and_of_every_override(
        provider: str, feature: str, how: str) -> None:
    assert offer(load_manifest(provider), feature) == how


def test_a_refusal_case_needs_the_feature_absent_for_a_model_no_override_names() -> None:
    openai = load_manifest("openai")
    assert refusable(openai, "audio")  # offered, but only to audio models
    assert not refusable(openai, "image")
    assert not refusable(load_manifest("anthropic"), "replay")  # nothing to refuse
    assert all(not refusable(load_manifest("voyage"), f) for f in FEATURES)  # no chat
