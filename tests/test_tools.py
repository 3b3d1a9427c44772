"""tools/record and tools/new-provider, exercised against a local server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from engine.conformance import record as rec
from engine.conformance.fixture import API_KEY, load_fixture
from engine.conformance.runner import Case, run_case
from engine.conformance.scaffold import main as scaffold_main
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse
from engine.manifest import clear_cache

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "sk-live-SENTINEL-9f8e7d6c5b4a"
RECORDING = ROOT / "conformance" / "recordings" / "openai_chat_stream_toolcall.sse"
ANSWER = json.loads((ROOT / "tests/data/responses/openai_chat_text.json").read_text())


def openai_like(request: RecordedRequest) -> ScriptedResponse:
    if request.json().get("stream"):
        body = RECORDING.read_bytes()
        return ScriptedResponse.sse([body[:700], body[700:1500], body[1500:]])
    return ScriptedResponse.json(ANSWER, headers=[("x-request-id", "req_abc"),
                                                  ("set-cookie", "session=s3cr3t")])


def record_to(tmp_path: Path, server: ReplayServer, request: dict, scenario: str,
              redact=()) -> Path:
    capture, expect, key = asyncio.run(rec.record(
        "openai/gpt-4o-mini", request, api_key=SENTINEL, base_url=server.url + "/v1"))
    fixture = rec.build_fixture(capture, expect, request, model_id="openai/gpt-4o-mini",
                                scenario=scenario, key=key, redact=redact, recorded_by="tester")
    out = tmp_path / "openai" / f"{scenario}.yaml"
    rec.write_fixture(fixture, out, key, redact)
    return out


def test_recorded_fixture_is_redacted_and_replays_green(tmp_path):
    with ReplayServer(openai_like) as server:
        request = {"messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Weather in Tokyo?"}],
                   "params": {"temperature": 0.2}}
        out = record_to(tmp_path, server, request, "text")
        text = out.read_text()
        assert SENTINEL not in text and "s3cr3t" not in text and "req_abc" not in text
        data = yaml.safe_load(text)
        assert data["sent"]["headers"]["authorization"] == "Bearer {api_key}"
        assert data["sent"]["path"] == "/v1/chat/completions"
        assert data["source"]["kind"] == "live-recording" and "tester" in data["source"]["origin"]
        assert data["expect"]["content"] == ANSWER["choices"][0]["message"]["content"]
        fixture = load_fixture(out)
        case = Case(fixture.id, "openai", "text", "fixture", fixture, fixture.chunks)
        outcome = asyncio.run(run_case(case, server, {}))
    assert outcome.status == "pass", outcome.problems


def test_stream_recording_keeps_the_reads(tmp_path):
    with ReplayServer(openai_like) as server:
        request = {"messages": [{"role": "user", "content": "Capital of the UK?"}],
                   "stream": True}
        out = record_to(tmp_path, server, request, "stream_tools")
        data = yaml.safe_load(out.read_text())
        assert "".join(data["answer"]["chunks"]).encode() == RECORDING.read_bytes()
        assert data["expect"]["tool_calls"] == [{"name": "get_capital",
                                                 "arguments": {"country": "UK"}}]
        assert data["expect"]["events"][-1] == "finished"
        fixture = load_fixture(out)
        outcome = asyncio.run(run_case(Case(fixture.id, "openai", "stream_tools", "fixture",
                                            fixture, fixture.chunks), server, {}))
    assert outcome.status == "pass", outcome.problems


def test_refuses_to_write_when_the_key_is_echoed(tmp_path):
    def echo(request: RecordedRequest) -> ScriptedResponse:
        return ScriptedResponse.json({"error": {
            "message": f"Incorrect API key provided: {request.header('authorization')[7:]}",
            "type": "invalid_request_error", "code": "invalid_api_key"}}, 401)

    with ReplayServer(echo) as server, pytest.raises(rec.LeakError):
        capture, expect, key = asyncio.run(rec.record(
            "openai/gpt-4o-mini", {"messages": [{"role": "user", "content": "hi"}]},
            api_key=SENTINEL, base_url=server.url + "/v1"))
        fixture = rec.build_fixture(capture, expect, {"messages": []},
                                    model_id="openai/gpt-4o-mini", scenario="error_auth",
                                    key="not-the-key")
        rec.write_fixture(fixture, tmp_path / "openai" / "x.yaml", key)
    assert not (tmp_path / "openai" / "x.yaml").exists()


def test_leak_check_sees_encoded_forms():
    assert rec.leaks("abc", "") == []
    assert rec.leaks(f"x {SENTINEL} y", SENTINEL)
    encoded = __import__("base64").b64encode(SENTINEL.encode()).decode()
    assert rec.leaks(f"basic {encoded}", SENTINEL)
    assert rec.leaks("acct-7788 in a url", "", ["acct-7788"])


def test_query_keys_and_account_ids_are_redacted(tmp_path, monkeypatch):
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "qauth.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: qauth
        base_url: https://q.test
        auth: {scheme: query, param: key, env: [QAUTH_KEY]}
        chat:
          path: "/accounts/acct-7788/models/{{ model }}:chat"
          body: {prompt: "{{ messages[-1].content }}"}
          response: {content: text, finish_reason: done}
        """))
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path / "protocols"))
    monkeypatch.setenv("QAUTH_KEY", SENTINEL)
    clear_cache()
    try:
        with ReplayServer(lambda r: ScriptedResponse.json({"text": "ok", "done": "yes"})) as srv:
            code = rec.main(["qauth/m1", "--scenario", "text", "--user", "hi", "--base-url",
                             srv.url, "--redact", "acct-7788",
                             "--out", str(tmp_path / "fx" / "qauth" / "text.yaml")])
        text = (tmp_path / "fx" / "qauth" / "text.yaml").read_text()
    finally:
        clear_cache()
    assert code == 0
    data = yaml.safe_load(text)
    assert data["sent"]["path"] == "/accounts/<redacted>/models/m1:chat?key={api_key}"
    assert SENTINEL not in text and "acct-7788" not in text


def test_new_provider_scaffold(tmp_path, capsys):
    protocols, fixtures = tmp_path / "p", tmp_path / "f"
    protocols.mkdir()
    (protocols / "openai.yaml").write_text((ROOT / "protocols/openai.yaml").read_text())
    args = ["acme", "--extends", "openai", "--base-url", "https://api.acme.test/v1",
            "--protocols", str(protocols), "--fixtures", str(fixtures)]
    assert scaffold_main(args) == 0
    out = capsys.readouterr().out
    assert "manifest validates" in out and "python -m conformance -k acme/" in out
    manifest = yaml.safe_load((protocols / "acme.yaml").read_text())
    assert manifest["extends"] == "openai" and manifest["auth"]["env"] == ["ACME_API_KEY"]
    assert "- [ ] `error_in_stream.yaml`" in (fixtures / "acme" / "README.md").read_text()
    assert scaffold_main(args) == 1  # never overwrites
    assert scaffold_main(["solo", "--protocols", str(protocols), "--fixtures",
                          str(fixtures)]) == 0


def test_tool_scripts_run(tmp_path):
    # The scripts run $PYTHON (default .venv/bin/python): this interpreter, wherever it is.
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run([str(ROOT / "tools" / "new-provider"), "--help"], capture_output=True,
                         text=True, check=False, env=env)
    assert run.returncode == 0 and "--extends" in run.stdout
    run = subprocess.run([str(ROOT / "tools" / "record"), "--help"], capture_output=True,
                         text=True, check=False, env=env)
    assert run.returncode == 0 and "--redact" in run.stdout
    assert API_KEY.startswith("sk-conformance")
