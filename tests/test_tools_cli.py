"""The command lines users run: tools/record, tools/new-provider, the runner, the demo.

Each is run as a subprocess (the CLI is the thing tested): exit status,
what it prints on stdout and stderr, and what it writes (or does not).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from engine.conformance.fixture import load_fixture
from engine.conformance.runner import Case, run_case
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ANSWER = json.loads((ROOT / "tests/data/responses/openai_chat_text.json").read_text())
KEY = "sk-cli-test-0000"


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
        drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run a command with this interpreter as $PYTHON, no inherited AI_PROTOCOL_PATH, *env*
    added and *drop* removed."""
    full = {k: v for k, v in os.environ.items() if k != "AI_PROTOCOL_PATH"}
    full.update({"PYTHON": sys.executable, **(env or {})})
    for name in drop:
        full.pop(name, None)
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=120, check=False)


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def openai_like() -> Iterator[ReplayServer]:
    def answer(request: RecordedRequest) -> ScriptedResponse:
        return ScriptedResponse.json(ANSWER)

    with ReplayServer(answer) as server:
        yield server


# ---------------------------------------------------------------- tools/record

def test_record_with_the_connection_refused_writes_nothing_and_says_why(tmp_path):
    out = tmp_path / "openai" / "text.yaml"
    port = closed_port()
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "text",
                "--user", "hi", "--base-url", f"http://127.0.0.1:{port}/v1", "--out", str(out)],
               cwd=tmp_path, env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 1, done.stderr
    assert not out.exists() and not out.parent.exists()
    assert "wrote" not in done.stdout
    assert f"no answer from http://127.0.0.1:{port}" in done.stderr
    assert "connection" in done.stderr and "nothing written" in done.stderr
    assert KEY not in done.stderr


def test_record_without_a_key_shows_the_engines_message(tmp_path, openai_like):
    out = tmp_path / "text.yaml"
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "text",
                "--user", "hi", "--base-url", openai_like.url + "/v1", "--out", str(out)],
               cwd=tmp_path, drop=("OPENAI_API_KEY",))
    assert done.returncode == 1 and not out.exists()
    assert "authentication" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert openai_like.requests == []


def test_a_recorded_fixture_names_no_local_identity(tmp_path, openai_like):
    out = tmp_path / "openai" / "text.yaml"
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "text",
                "--user", "What is the temperature in Tokyo?", "--base-url",
                openai_like.url + "/v1", "--out", str(out)],
               cwd=tmp_path, env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: HTTP 200" in done.stdout
    data = yaml.safe_load(out.read_text())
    origin = data["source"]["origin"]
    assert re.fullmatch(r"recorded with tools/record on \d{4}-\d\d-\d\d \d\d:\d\d UTC from "
                        r"http://127\.0\.0\.1", origin), origin
    assert getpass.getuser() not in origin and socket.gethostname() not in out.read_text()
    assert KEY not in out.read_text()


def test_recorded_by_is_only_what_the_user_gives(tmp_path, openai_like):
    out = tmp_path / "openai" / "text.yaml"
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "text",
                "--user", "hi", "--base-url", openai_like.url + "/v1", "--recorded-by",
                "Ada L.", "--out", str(out)], cwd=tmp_path, env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text())["source"]["origin"].startswith(
        "recorded by Ada L. with tools/record on ")


def test_record_a_tool_result_scenario_from_a_messages_file(tmp_path, openai_like):
    history = [
        {"role": "user", "content": "What is the temperature in Tokyo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "name": "get_temperature", "arguments": {"city": "Tokyo"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "20.0"},
    ]
    tools = [{"name": "get_temperature", "description": "Temperature in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    (tmp_path / "history.json").write_text(json.dumps(history))
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    out = tmp_path / "openai" / "tool_result.yaml"
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "tool_result",
                "--system", "You are a helpful assistant.", "--messages", "history.json",
                "--tools", "tools.json", "--base-url", openai_like.url + "/v1",
                "--out", str(out)], cwd=tmp_path, env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(out.read_text())
    assert data["request"]["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."}, *history]
    assert data["request"]["tools"] == tools
    sent = data["sent"]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "get_temperature",
                                                    "arguments": '{"city":"Tokyo"}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": "20.0"}
    assert data["expect"]["content"] == ANSWER["choices"][0]["message"]["content"]
    fixture = load_fixture(out)
    outcome = asyncio.run(run_case(Case(fixture.id, "openai", "tool_result", "fixture",
                                        fixture, fixture.chunks), openai_like, {}))
    assert outcome.status == "pass", outcome.problems


@pytest.mark.parametrize(("content", "message"), [
    ('{"role": "user"}', "expected a JSON list of objects"),
    ('[{"role": "wizard", "content": "hi"}]', "message 0: message role must be"),
    ("[not json", "--messages"),
])
def test_a_bad_messages_file_is_refused_before_any_request(tmp_path, openai_like, content,
                                                           message):
    (tmp_path / "history.json").write_text(content)
    out = tmp_path / "x.yaml"
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "tool_result",
                "--messages", "history.json", "--base-url", openai_like.url + "/v1",
                "--out", str(out)], cwd=tmp_path, env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and openai_like.requests == []


def test_record_needs_a_conversation(tmp_path):
    done = run([str(TOOLS / "record"), "openai/gpt-4o-mini", "--scenario", "text",
                "--out", str(tmp_path / "x.yaml")], cwd=tmp_path)
    assert done.returncode == 2 and "--user TEXT and/or --messages FILE" in done.stderr


# ---------------------------------------------------------------- the runner

def test_a_k_that_selects_nothing_is_an_error(tmp_path):
    done = run([sys.executable, "-m", "engine.conformance", "-k", "nosuch"], cwd=tmp_path)
    assert done.returncode == 2
    assert "no case id contains 'nosuch'" in done.stderr
    assert "passed" not in done.stdout
    listed = run([sys.executable, "-m", "engine.conformance", "-k", "nosuch", "--list"],
                 cwd=tmp_path)
    assert listed.returncode == 2 and listed.stdout == ""


def test_a_missing_fixtures_directory_is_an_error(tmp_path):
    missing = tmp_path / "nonexistent"
    done = run([sys.executable, "-m", "engine.conformance", "--fixtures", str(missing)],
               cwd=tmp_path)
    assert done.returncode == 2
    assert f"--fixtures: {missing} is not a directory" in done.stderr
    assert done.stdout == ""


def test_the_repository_shim_runs_the_same_runner():
    done = run([sys.executable, "-m", "conformance", "-k", "openai/text", "--list"], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openai/text"]
    nothing = run([sys.executable, "-m", "conformance", "-k", "nosuch"], cwd=ROOT)
    assert nothing.returncode == 2 and "nosuch" in nothing.stderr


# ---------------------------------------------------------------- tools/new-provider

def test_new_provider_resolves_relative_paths_against_the_callers_directory(tmp_path):
    (tmp_path / "mine" / "protocols").mkdir(parents=True)
    done = run([str(TOOLS / "new-provider"), "acme", "--extends", "openai",
                "--protocols", "mine/protocols", "--fixtures", "mine/fixtures"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mine/protocols/acme.yaml").is_file()
    assert (tmp_path / "mine/fixtures/acme/README.md").is_file()
    assert not (ROOT / "mine").exists()
    assert "manifest validates" in done.stdout
    assert "is not on the manifest search path" in done.stdout  # and it says what to do
    assert "AI_PROTOCOL_PATH=" in done.stdout


def test_new_provider_extends_a_builtin_into_a_directory_on_the_search_path(tmp_path):
    user = tmp_path / "user-protocols"
    user.mkdir()
    env = {"AI_PROTOCOL_PATH": str(user)}
    done = run([str(TOOLS / "new-provider"), "acme", "--extends", "openai", "--base-url",
                "https://api.acme.test/v1", "--protocols", str(user), "--fixtures",
                str(tmp_path / "fixtures")], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "manifest validates" in done.stdout
    assert "not on the manifest search path" not in done.stdout
    assert sorted(p.name for p in user.iterdir()) == ["acme.yaml"]  # openai was not copied
    code = ("from engine.manifest import load_manifest\n"
            "m = load_manifest('acme')\n"
            "print(m.id, m.base_url, m.auth.env)\n")
    loaded = run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "acme https://api.acme.test/v1 ('ACME_API_KEY',)"


@pytest.mark.parametrize(("args", "message"), [
    (["acme", "--protocols", "nowhere", "--fixtures", "f"],
     "--protocols: nowhere is not a directory"),
    (["acme", "--extends", "nosuch", "--protocols", ".", "--fixtures", "f"],
     "--extends: no manifest 'nosuch'"),
])
def test_new_provider_reports_bad_arguments_without_a_traceback(tmp_path, args, message):
    done = run([str(TOOLS / "new-provider"), *args], cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    [str(TOOLS / "new-provider"), "--help"],
    [str(TOOLS / "record"), "--help"],
    [sys.executable, "-m", "engine.conformance", "--help"],
])
def test_help_has_no_markup(tmp_path, command):
    done = run(command, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: ")
    assert "`" not in done.stdout, done.stdout


# ---------------------------------------------------------------- the demo

def test_the_demo_runs_offline_and_serves_honest_copies():
    done = run([sys.executable, "-m", "engine.conformance.demo"], cwd=ROOT,
               drop=("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                     "DEEPSEEK_API_KEY"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("10 requests answered; same code, 5 providers.")
    assert "'The temperature in Tokyo is currently 20.0 degrees Celsius.'" in done.stdout
    assert "tool call get_capital" in done.stdout
    demo = ROOT / "conformance" / "demo"
    origins = {".json": ROOT / "tests" / "data" / "responses",
               ".sse": ROOT / "conformance" / "recordings"}
    spec = yaml.safe_load((demo / "demo.yaml").read_text())
    answers = [call["answer"] for calls in spec["providers"].values()
               for call in calls.values()]
    assert len(answers) == 10
    for name in answers:
        copy = demo / name
        if copy.suffix in origins:
            assert copy.read_bytes() == (origins[copy.suffix] / name).read_bytes(), name
        else:
            assert "CONSTRUCTED" in name  # the one answer with no recording says so
