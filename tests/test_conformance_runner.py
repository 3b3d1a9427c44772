"""The conformance runner itself: coverage, refusals, known failures, request checks."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from engine.conformance.__main__ import main as conformance_main
from engine.conformance.fixture import FIXTURES, load_fixture, resplit, split_events
from engine.conformance.runner import (
    ALL_SCENARIOS,
    REFUSED_AS,
    Case,
    all_cases,
    check_sent,
    coverage,
    known_failures,
    lacks,
    run_case,
)
from engine.conformance.server import ReplayServer
from engine.manifest import clear_cache
from engine.manifest.load import load_manifest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    yield tmp_path
    clear_cache()


def test_a_new_manifest_without_fixtures_is_reported_missing(user_dir, capsys):
    (user_dir / "acme.yaml").write_text("manifest: 1\nid: acme\nextends: openai\n"
                                        "base_url: https://acme.test/v1\n"
                                        "auth: {scheme: bearer, env: [ACME_KEY]}\n")
    _cases, problems, providers = all_cases()
    assert "acme" in providers and problems == []
    table = coverage([], providers)
    # openai's chat, embed and list_models are inherited and uncovered; it has no counter
    assert set(table["acme"].values()) == {"missing", "n/a"}
    assert [s for s, v in table["acme"].items() if v == "n/a"] == ["count_tokens"]
    assert conformance_main(["--list"]) == 0
    capsys.readouterr()


def test_declared_gaps_become_refusal_cases(user_dir):
    (user_dir / "plain.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: plain
        base_url: https://plain.test
        auth: {scheme: none}
        capabilities: {tools: false}
        chat:
          path: /complete
          body: {prompt: "{{ messages[-1].content }}"}
          response: {content: text, finish_reason: done}
        """))
    cases, _, _providers = all_cases()
    refusals = [c for c in cases if c.provider == "plain"]
    # the scenarios it lacks, then every feature beyond text (it declares none)
    assert {c.scenario for c in refusals} == {"tools", "tool_result", "stream_tools",
                                              "stream_text", "error_in_stream",
                                              "embed", "list_models", "count_tokens",
                                              "image", "document", "audio", "structured",
                                              "structured_stream", "json", "reasoning",
                                              "cache"}
    with ReplayServer() as server:
        outcomes = [asyncio.run(run_case(c, server, {})) for c in refusals]
    assert all(o.status == "pass" for o in outcomes), [o.problems for o in outcomes]
    table = coverage(outcomes, ["plain"])["plain"]
    assert table["tools"] == "refused" and table["stream_text"] == "refused"
    assert table["text"] == "missing"
    assert (table["embed"], table["embed_batch"]) == ("refused", "n/a")
    assert len(server.requests) == 0


def test_known_failures_need_reasons_and_cannot_go_stale(tmp_path):
    bad = tmp_path / "k.yaml"
    bad.write_text("openai/text: ''\n")
    with pytest.raises(ValueError):
        known_failures(bad)
    assert known_failures(ROOT / "conformance" / "known_failures.yaml") == {}
    fixture = load_fixture(FIXTURES / "openai" / "text.yaml")
    case = Case(fixture.id, "openai", "text", "fixture", fixture, fixture.chunks)
    with ReplayServer() as server:
        stale = asyncio.run(run_case(case, server, {"openai/text": "was broken once"}))
    assert stale.status == "fail" and "but it passes" in stale.problems[0]


def test_request_mismatch_fails_the_case(tmp_path):
    src = (FIXTURES / "anthropic" / "text.yaml").read_text()
    (tmp_path / "anthropic").mkdir()
    (tmp_path / "anthropic" / "text.yaml").write_text(
        src.replace("anthropic-version: '2023-06-01'", "anthropic-version: '2099-01-01'"))
    assert "2099-01-01" in (tmp_path / "anthropic" / "text.yaml").read_text()
    fixture = load_fixture(tmp_path / "anthropic" / "text.yaml")
    with ReplayServer() as server:
        outcome = asyncio.run(run_case(Case(fixture.id, "anthropic", "text", "fixture", fixture,
                                            fixture.chunks), server, {}))
    assert outcome.status == "fail"
    assert any("header anthropic-version" in p for p in outcome.problems)


def test_vary_requires_presence():
    fixture = load_fixture(FIXTURES / "openai" / "text.yaml")
    data = dict(fixture.data)
    data["sent"] = dict(data["sent"], vary=["messages[0].content", "nope"])
    varied = type(fixture)(fixture.path, data, fixture.chunks)

    class Req:
        method, path = "POST", "/v1/chat/completions"
        body = (b'{"model":"o3-mini","messages":[{"role":"system","content":"other"},'
                b'{"role":"user","content":"What is the capital of Mexico?"}],'
                b'"max_completion_tokens":500}')

        def header(self, name):
            return {"authorization": "Bearer sk-conformance-0000-test-key",
                    "content-type": "application/json"}.get(name)

    assert check_sent(varied, Req()) == ["body.nope: missing (it may vary, but must be sent)"]


def test_resplit_keeps_the_bytes_and_is_reproducible():
    chunks = tuple(split_events((ROOT / "conformance/recordings/"
                                 "anthropic_stream_thinking_padded.sse").read_bytes()))
    again = resplit(chunks, "seed")
    assert b"".join(again) == b"".join(chunks) and again == resplit(chunks, "seed")
    assert again != chunks


def test_every_shipped_manifest_has_every_scenario():
    cases, problems, providers = all_cases()
    assert problems == []
    have = {(c.provider, c.scenario) for c in cases}
    # A provider that declares no in-stream errors has that scenario as n/a, not a case.
    def needed(provider: str, scenario: str) -> bool:
        lack = lacks(load_manifest(provider), scenario)
        if lack == "operation":  # one refusal case per operation a manifest lacks
            return scenario in REFUSED_AS.values()
        return lack != "stream_errors"

    wanted = {(p, s) for p in providers for s in ALL_SCENARIOS if needed(p, s)}
    assert wanted <= have
