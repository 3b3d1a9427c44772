"""The command line, ``python -m engine`` / ``ai-engine``, run as a subprocess.

Each test runs the real command against the loopback ReplayServer answering in
a provider's wire format (recorded bodies where the repository has them) and
asserts the exit status, stdout and stderr exactly, and what was sent. Also
here: ENGINE_LOG (engine.logsetup), called directly and in a subprocess.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import logsetup
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse

ROOT = Path(__file__).resolve().parent.parent
RESPONSES = ROOT / "tests" / "data" / "responses"
RECORDINGS = ROOT / "conformance" / "recordings"
TEXT_ANSWER = json.loads((RESPONSES / "openai_chat_text.json").read_text())
KEY = "sk-cli-test-key-0001"
# Every variable a run could inherit that changes what it does.
CLEARED = ("AI_PROTOCOL_PATH", "ENGINE_LOG", "NO_COLOR", "OPENAI_API_KEY", "OPENAI_BASE_URL",
           "DEEPSEEK_API_KEY", "MY_KEY")


def environment(env: dict[str, str] | None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full.update(env or {})
    return full


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m engine ARGS`` with a clean environment plus *env*."""
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, cwd=cwd,
                          env=environment(env), capture_output=True, text=True, timeout=120,
                          check=False)


def console_script() -> str:
    """The ``ai-engine`` script next to this interpreter (the editable install puts it there)."""
    script = shutil.which("ai-engine", path=str(Path(sys.executable).parent))
    assert script is not None, "no ai-engine script: re-run python -m pip install -e '.[test]'"
    return script


def key_env(**extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY, **extra}


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    """One chat-completions stream chunk, shaped as in openai_chat_stream_toolcall.sse."""
    obj = {"id": "chatcmpl-cli", "object": "chat.completion.chunk", "created": 1782955817,
           "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
           "usage": None}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


USAGE_CHUNK = (b'data: {"id":"chatcmpl-cli","object":"chat.completion.chunk","created":1782955817,'
               b'"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":14,'
               b'"completion_tokens":8,"total_tokens":22}}\n\n')
TEXT_STREAM = [chunk({"role": "assistant", "content": ""}), chunk({"content": "The capital"}),
               chunk({"content": " of France"}), chunk({"content": " is Paris."}),
               chunk({}, "stop"), USAGE_CHUNK, b"data: [DONE]\n\n"]


class Server:
    """A loopback server answering every request with one script."""

    def __init__(self, script: ScriptedResponse) -> None:
        self.script = script
        self.replay = ReplayServer(self._answer)

    def _answer(self, request: RecordedRequest) -> ScriptedResponse:
        return self.script

    @property
    def base(self) -> str:
        return self.replay.url + "/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.replay.requests


@pytest.fixture
def server() -> Iterator[Server]:
    holder = Server(ScriptedResponse.sse(TEXT_STREAM))
    with holder.replay:
        yield holder


def sse_deltas(path: Path, field: str) -> str:
    """The concatenated ``delta[field]`` texts of a recorded chat-completions stream."""
    text = ""
    for line in path.read_text().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get(field) or ""
    return text


# ---------------------------------------------------------------- chat: output

def test_chat_streams_the_answer_to_stdout_and_sends_the_options(server):
    done = cli("chat", "openai/gpt-4o-mini", "What is the capital of France?",
               "--system", "Be terse.", "--temperature", "0.2", "--max-tokens", "50",
               "--base-url", server.base, env=key_env())
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "The capital of France is Paris.\n", "")
    [request] = server.requests
    assert request.url_path == "/v1/chat/completions"
    assert request.header("authorization") == f"Bearer {KEY}"
    body = request.json()
    assert body["messages"] == [{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": "What is the capital of France?"}]
    assert (body["model"], body["stream"], body["temperature"], body["max_tokens"]) == (
        "gpt-4o-mini", True, 0.2, 50)


def read_some(stream: Any, wait: float = 30.0) -> bytes:
    ready, _, _ = select.select([stream], [], [], wait)
    assert ready, "nothing arrived"
    return os.read(stream.fileno(), 4096)


def test_each_delta_reaches_stdout_as_it_arrives_and_ctrl_c_ends_the_run(server):
    """The server sends two deltas and then holds the stream open: they are on stdout while
    the command still waits; SIGINT then ends it with the cancelled line and status 130."""
    server.script = ScriptedResponse.sse(TEXT_STREAM[:3])
    server.script.fault, server.script.fault_after_chunks = "hang_after_body_start", 3
    proc = subprocess.Popen([sys.executable, "-m", "engine", "chat", "openai/gpt-4o-mini", "hi",
                             "--base-url", server.base, "--timeout", "60"],
                            cwd=ROOT, env=environment(key_env()), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        seen = b""
        while seen != b"The capital of France":
            seen += read_some(proc.stdout)
        time.sleep(0.2)
        assert proc.poll() is None  # still streaming
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (130, b"", b"error: cancelled: interrupted\n")


def test_thinking_goes_to_stderr_and_the_answer_to_stdout():
    recording = RECORDINGS / "deepseek_stream_reasoning_content.sse"
    thinking = sse_deltas(recording, "reasoning_content")
    content = sse_deltas(recording, "content")
    assert thinking and content and not content.endswith("\n") and not thinking.endswith("\n")
    with ReplayServer(lambda r: ScriptedResponse.sse([recording.read_bytes()])) as replay:
        done = cli("chat", "deepseek/deepseek-reasoner", "Hello", "--base-url", replay.url,
                   env={"DEEPSEEK_API_KEY": KEY})
    assert (done.returncode, done.stdout, done.stderr) == (0, content + "\n", thinking + "\n")


def run_with_a_terminal_for_stderr(args: list[str], env: dict[str, str]) -> tuple[int, str, bytes]:
    """(status, stdout, what a terminal on stderr received, with its CRLF made LF)."""
    main, other = os.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT,
                              env=environment(env), stdout=subprocess.PIPE, stderr=other,
                              text=True, timeout=60, check=False)
        os.close(other)
        other = -1
        received = b""
        while select.select([main], [], [], 0.5)[0]:
            try:
                piece = os.read(main, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not piece:
                break
            received += piece
    finally:
        os.close(main)
        if other >= 0:
            os.close(other)
    return done.returncode, done.stdout, received.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("no_color", [False, True])
def test_thinking_is_dimmed_on_a_terminal_unless_no_color(no_color):
    answer = json.loads((RESPONSES / "deepseek_chat_reasoner_text.json").read_text())
    message = answer["choices"][0]["message"]
    with ReplayServer(lambda r: ScriptedResponse.json(answer)) as replay:
        env = {"DEEPSEEK_API_KEY": KEY, **({"NO_COLOR": "1"} if no_color else {})}
        status, out, err = run_with_a_terminal_for_stderr(
            ["chat", "deepseek/deepseek-reasoner", "How many r in strawberry?", "--no-stream",
             "--base-url", replay.url], env)
    thinking = message["reasoning_content"].encode()
    assert (status, out) == (0, message["content"] + "\n")
    assert err == (thinking + b"\n" if no_color else b"\x1b[2m" + thinking + b"\x1b[0m\n")


def test_no_stream_sends_one_plain_request(server):
    server.script = ScriptedResponse.json(TEXT_ANSWER)
    done = cli("chat", "openai/gpt-4.1-mini", "What is the temperature in Tokyo?", "--no-stream",
               "--base-url", server.base, env=key_env())
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "The temperature in Tokyo is currently 20.0 degrees Celsius.\n", "")
    [request] = server.requests
    assert "stream" not in request.json()


def test_the_prompt_is_read_from_stdin_when_it_is_a_dash(server):
    done = cli("chat", "openai/gpt-4o-mini", "-", "--base-url", server.base, env=key_env(),
               stdin="Line one\nline two\n")
    assert (done.returncode, done.stdout) == (0, "The capital of France is Paris.\n")
    [request] = server.requests
    assert request.json()["messages"] == [{"role": "user", "content": "Line one\nline two"}]


def test_a_tool_call_answer_is_listed_on_stderr():
    recording = RECORDINGS / "openai_chat_stream_toolcall.sse"
    with ReplayServer(lambda r: ScriptedResponse.sse([recording.read_bytes()])) as replay:
        done = cli("chat", "openai/gpt-4o-mini", "Capital of the UK?", "--base-url",
                   replay.url + "/v1", env=key_env())
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "", 'tool call: get_capital {"country":"UK"}\n')


def test_a_truncated_answer_says_why(server):
    stream = [*TEXT_STREAM[:3], chunk({}, "length"), USAGE_CHUNK, b"data: [DONE]\n\n"]
    server.script = ScriptedResponse.sse(stream)
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", server.base, env=key_env())
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "The capital of France\n", "finish reason: length\n")


# ---------------------------------------------------------------- chat: --json

def stats_of(data: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The *known* fields of data's stats (a float latency_ms removed); every other field,
    one these answers do not report, is None."""
    stats = data.pop("stats")
    assert isinstance(stats.pop("latency_ms"), float)
    assert {k: v for k, v in stats.items() if k not in known and v is not None} == {}
    return {k: v for k, v in stats.items() if k in known}


STATS = {"prompt_tokens", "completion_tokens", "total_tokens", "ttft_ms", "attempts", "model",
         "provider", "cached_tokens", "reasoning_tokens", "cost_usd"}


def test_json_streamed_is_one_object_of_plain_data(server):
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--json", "--base-url", server.base,
               env=key_env())
    assert (done.returncode, done.stderr, done.stdout.count("\n")) == (0, "", 1)
    data = json.loads(done.stdout)
    stats = stats_of(data, STATS)
    assert isinstance(stats.pop("ttft_ms"), float)
    assert data == {"content": "The capital of France is Paris.", "thinking": None,
                    "tool_calls": [], "finish_reason": "stop",
                    "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22,
                              "cached_tokens": None, "reasoning_tokens": None,
                              "cache_write_tokens": None}}
    # gpt-4o-mini's catalogue prices: $0.15 in, $0.60 out per million tokens
    assert stats.pop("cost_usd") == pytest.approx((14 * 0.15 + 8 * 0.6) / 1e6)
    assert stats == {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22,
                     "attempts": 1, "model": "gpt-4o-mini", "provider": "openai",
                     "cached_tokens": None, "reasoning_tokens": None}


def test_json_without_streaming(server):
    server.script = ScriptedResponse.json(TEXT_ANSWER)
    done = cli("chat", "openai/gpt-4.1-mini", "hi", "--json", "--no-stream", "--base-url",
               server.base, env=key_env())
    assert (done.returncode, done.stderr) == (0, "")
    data = json.loads(done.stdout)
    stats = stats_of(data, STATS)
    assert data == {"content": "The temperature in Tokyo is currently 20.0 degrees Celsius.",
                    "thinking": None, "tool_calls": [], "finish_reason": "stop",
                    "usage": {"prompt_tokens": 75, "completion_tokens": 15, "total_tokens": 90,
                              "cached_tokens": 0, "reasoning_tokens": 0,
                              "cache_write_tokens": None}}
    assert stats == {"prompt_tokens": 75, "completion_tokens": 15, "total_tokens": 90,
                     "ttft_ms": None, "attempts": 1, "model": "gpt-4.1-mini",
                     "provider": "openai", "cached_tokens": 0, "reasoning_tokens": 0,
                     "cost_usd": None}


def test_json_carries_the_tool_calls():
    recording = RECORDINGS / "openai_chat_stream_toolcall.sse"
    with ReplayServer(lambda r: ScriptedResponse.sse([recording.read_bytes()])) as replay:
        done = cli("chat", "openai/gpt-4o-mini", "Capital of the UK?", "--json",
                   "--base-url", replay.url + "/v1", env=key_env())
    data = json.loads(done.stdout)
    assert (done.returncode, done.stderr) == (0, "")
    assert (data["content"], data["finish_reason"]) == ("", "tool_calls")
    assert data["tool_calls"] == [{"id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "name": "get_capital",
                                   "arguments": {"country": "UK"}}]
    assert data["usage"]["total_tokens"] == 68


# ---------------------------------------------------------------- chat: failures

ERROR_401 = json.loads((RESPONSES / "openai_error_401_invalid_api_key.json").read_text())
ECHOED_KEY = "sk-proj-e2eTESTkey0001"  # the key the recorded 401 body repeats


def test_an_error_is_one_line_with_its_kind_and_never_the_key(server):
    server.script = ScriptedResponse.json(ERROR_401, status=401)
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", server.base,
               env={"OPENAI_API_KEY": ECHOED_KEY})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: authentication: Incorrect API key provided: ")
    assert done.stderr.endswith(" (HTTP 401)\n")
    assert ECHOED_KEY not in done.stderr and ECHOED_KEY[:12] not in done.stderr
    assert len(server.requests) == 1


def test_debug_adds_the_traceback_and_still_hides_the_key(server):
    server.script = ScriptedResponse.json(ERROR_401, status=401)
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", server.base, "--debug",
               env={"OPENAI_API_KEY": ECHOED_KEY})
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):\n")
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: authentication: Incorrect API key provided: ")
    assert ECHOED_KEY not in done.stderr + done.stdout


def test_without_a_key_nothing_is_sent(server):
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", server.base)
    assert (done.returncode, done.stdout, done.stderr) == (
        1, "", "error: authentication: no API key for openai: pass api_key= or set "
               "OPENAI_API_KEY\n")
    assert server.requests == []


def test_api_key_env_names_the_variable_holding_the_key(server):
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--api-key-env", "MY_KEY", "--base-url",
               server.base, env={"MY_KEY": KEY})
    assert (done.returncode, done.stdout) == (0, "The capital of France is Paris.\n")
    assert server.requests[0].header("authorization") == f"Bearer {KEY}"
    assert KEY not in done.stdout + done.stderr
    unset = cli("chat", "openai/gpt-4o-mini", "hi", "--api-key-env", "MY_KEY", "--base-url",
                server.base, env=key_env())
    assert (unset.returncode, unset.stdout, unset.stderr) == (
        1, "", "error: authentication: no API key: the variable named by --api-key-env is not "
               "set\n")
    assert len(server.requests) == 1


@pytest.mark.parametrize(("args", "line"), [
    (["nope/some-model"], "error: invalid_request: unknown provider 'nope': no nope.yaml in "),
    (["some-model"], "error: invalid_request: model id must look like 'provider/model', got "
                     "'some-model'\n"),
    (["openai/gpt-4o", "--temperature", "5"],
     "error: invalid_request: temperature must be between 0.0 and 2.0, got 5.0\n"),
    (["openai/gpt-4o", "--base-url", "ftp://host"],
     "error: invalid_request: base_url must be an absolute http:// or https:// URL, got "
     "'ftp://host'\n"),
], ids=["unknown-provider", "no-provider", "temperature", "base-url"])
def test_bad_values_are_one_error_line(args, line):
    model, *options = args
    done = cli("chat", model, "hi", *options, env=key_env())
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["chat", "openai/gpt-4o", "   "], "ai-engine chat: error: the prompt is empty"),
    (["chat", "openai/gpt-4o"], "error: the following arguments are required: PROMPT"),
    (["chat", "openai/gpt-4o", "hi", "--temperature", "warm"],
     "error: argument --temperature: invalid float value: 'warm'"),
    (["chat", "openai/gpt-4o", "hi", "--api-key", KEY],
     "ai-engine: error: the API key is never taken from the command line: set the variable the "
     "manifest names, or name another with --api-key-env NAME"),
    (["chat", "openai/gpt-4o", "hi", f"--api-key={KEY}"], "the API key is never taken"),
    (["chat", "openai/gpt-4o", "hi", "--api-key-env", KEY],
     "ai-engine chat: error: --api-key-env takes the name of an environment variable "
     "(letters, digits, '_'), not a key"),
    (["chat", "openai/gpt-4o", "hi", "--api-key-e", "MY_KEY"],
     "error: unrecognized arguments: --api-key-e MY_KEY"),
    (["frobnicate"], "error: argument COMMAND: invalid choice: 'frobnicate'"),
    ([], "error: the following arguments are required: COMMAND"),
], ids=["empty-prompt", "no-prompt", "not-a-number", "key-option", "key-option=",
        "key-as-name", "no-abbreviation", "unknown-command", "no-command"])
def test_usage_errors_exit_2_with_argparse_words(server, args, message):
    done = subprocess.run([console_script(), *args], cwd=ROOT, env=environment(key_env()),
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("usage: ai-engine")
    assert server.requests == [] and KEY not in done.stderr


def test_the_connection_refused_is_a_connection_error():
    with ReplayServer(lambda r: ScriptedResponse.json({})) as replay:
        port = replay.port
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", f"http://127.0.0.1:{port}/v1",
               env=key_env())
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("error: connection: ") and done.stderr.count("\n") == 1


def test_engine_log_shows_the_librarys_log_on_stderr(server):
    done = cli("chat", "openai/gpt-4o-mini", "hi", "--base-url", server.base,
               env=key_env(ENGINE_LOG="debug"))
    assert (done.returncode, done.stdout) == (0, "The capital of France is Paris.\n")
    lines = done.stderr.splitlines()
    assert any(" DEBUG engine: -> POST " in line and "/v1/chat/completions" in line
               for line in lines), done.stderr
    assert all(" engine: " in line for line in lines)
    assert KEY not in done.stderr


# ---------------------------------------------------------------- providers

OPENAI_YAML = ROOT / "protocols" / "openai.yaml"


def catalogue(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["models"])


def test_providers_lists_the_built_in_manifests():
    done = cli("providers")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "TOOLS", "STREAM", "TOOL_CHOICE", "MODELS",
                                "SOURCE"]
    ids = sorted(p.stem for p in (ROOT / "protocols").glob("*.yaml"))
    assert [line.split()[0] for line in lines[1:]] == ids
    [row] = [line.split() for line in lines if line.startswith("openai ")]
    assert row == ["openai", "OpenAI", "yes", "yes", "auto,none,required,tool",
                   str(len(catalogue(OPENAI_YAML))), "built-in"]


def write_manifest(directory: Path, ident: str, name: str, models: bool = True) -> Path:
    data = yaml.safe_load(OPENAI_YAML.read_text())
    data.update(id=ident, name=name)
    if not models:
        data.pop("models")
    path = directory / f"{ident}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_providers_json_with_a_search_path_a_shadow_and_broken_entries(tmp_path):
    mine = write_manifest(tmp_path, "mine", "Mine")
    shadow = write_manifest(tmp_path, "openai", "Shadowed OpenAI")
    broken = tmp_path / "broken.yaml"
    broken.write_text(OPENAI_YAML.read_text().replace("id: openai", "id: broken")
                      .replace("base_url:", "bogus_key: 1\nbase_url:"))
    missing = tmp_path / "missing"
    done = cli("providers", "--json",
               env={"AI_PROTOCOL_PATH": os.pathsep.join([str(tmp_path), str(missing)])})
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len(errors) == 2, done.stderr
    assert errors[0] == (f"error: invalid_request: AI_PROTOCOL_PATH names {missing}: "
                         "No such file or directory")
    assert errors[1].startswith(f"error: invalid_request: invalid manifest {broken}: ")
    assert "bogus_key: unknown field" in errors[1]
    rows = {row["id"]: row for row in json.loads(done.stdout)}
    modes = ["auto", "none", "required", "tool"]
    assert rows["mine"] == {"id": "mine", "name": "Mine", "source": str(mine), "builtin": False,
                            "tools": True, "stream": True, "tool_choice": modes,
                            "models": len(catalogue(OPENAI_YAML))}
    assert rows["openai"]["source"] == str(shadow)
    assert (rows["openai"]["name"], rows["openai"]["builtin"]) == ("Shadowed OpenAI", False)
    assert "broken" not in rows
    builtin = {p.stem for p in (ROOT / "protocols").glob("*.yaml")}
    assert set(rows) == builtin | {"mine"}
    assert all(rows[i]["builtin"] for i in builtin - {"openai"})


# ---------------------------------------------------------------- models

PRICED = ("context_window", "max_output", "input_price", "output_price", "cached_input_price")


def test_models_prints_the_catalogue():
    done = cli("models", "openai")
    assert (done.returncode, done.stderr) == (0, "")
    lines = [line.split() for line in done.stdout.splitlines()]

    def shown(value: Any) -> str:
        return "-" if value is None else str(value) if isinstance(value, int) else f"{value:g}"

    expected = [[model, *(shown(info.get(name)) for name in PRICED),
                 ",".join(info.get("capabilities") or []) or "-"]
                for model, info in catalogue(OPENAI_YAML).items()]
    assert lines == [["MODEL", "CONTEXT", "MAX_OUTPUT", "IN_$/M", "OUT_$/M", "CACHED_$/M",
                      "CAPABILITIES"], *expected]


def test_models_json_and_an_empty_catalogue(tmp_path):
    done = cli("models", "openai", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == [
        {"id": model, **{name: info.get(name) for name in PRICED},
         "capabilities": info.get("capabilities") or []}
        for model, info in catalogue(OPENAI_YAML).items()]
    write_manifest(tmp_path, "bare", "Bare", models=False)
    env = {"AI_PROTOCOL_PATH": str(tmp_path)}
    empty = cli("models", "bare", env=env)
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        0, "", "bare: the manifest lists no models\n")
    assert json.loads(cli("models", "bare", "--json", env=env).stdout) == []


@pytest.mark.parametrize(("provider", "start"), [
    ("nope", "error: invalid_request: unknown provider 'nope': no nope.yaml in "),
    ("openai/gpt-4o", "error: invalid_request: invalid provider id 'openai/gpt-4o': "),
])
def test_models_of_an_unknown_provider(provider, start):
    done = cli("models", provider)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, done.stderr


# ---------------------------------------------------------------- aliases

def module(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", name, *args], cwd=ROOT, env=environment(None),
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("args", [
    ["validate", str(OPENAI_YAML)],
    ["validate", str(ROOT / "no-such-manifest.yaml")],
    ["validate"],
    ["validate", "--help"],
    ["conformance", "--list", "-k", "openai/"],
    ["conformance", "-k", "no-case-has-this-id"],
    ["--debug", "conformance", "--fixtures", str(ROOT / "no-such-directory")],
], ids=["validate-ok", "validate-missing", "validate-usage", "validate-help", "conformance-list",
        "conformance-nothing", "conformance-missing-dir"])
def test_aliases_pass_their_arguments_through(args):
    name = "validate" if "validate" in args else "conformance"
    rest = args[args.index(name) + 1:]
    ours, theirs = cli(*args), module(f"engine.{name}", *rest)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode, theirs.stdout, theirs.stderr)
    assert "Traceback" not in ours.stderr


def test_alias_exit_statuses():
    assert cli("validate", str(OPENAI_YAML)).returncode == 0
    assert cli("validate", str(ROOT / "no-such-manifest.yaml")).returncode == 1
    assert cli("validate").returncode == 2
    assert cli("conformance", "-k", "no-case-has-this-id").returncode == 2


# ---------------------------------------------------------------- help, version, script

@pytest.mark.parametrize(("args", "start", "words"), [
    ([], "usage: python -m engine [-h] [--version] [--debug] COMMAND ...",
     ["chat", "providers", "models", "validate", "conformance", "ENGINE_LOG"]),
    (["chat"], "usage: python -m engine chat [-h]",
     ["--system", "--temperature", "--max-tokens", "--base-url", "--timeout", "--api-key-env",
      "--no-stream", "--json", "'-' reads stdin", "provider/model"]),
    (["providers"], "usage: python -m engine providers [-h]", ["--json", "AI_PROTOCOL_PATH"]),
    (["models"], "usage: python -m engine models [-h]", ["PROVIDER", "--json"]),
])
def test_every_command_has_help(args, start, words):
    done = cli(*args, "--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(start), done.stdout
    assert all(word in done.stdout for word in words)


def test_version():
    done = cli("--version")
    from engine import __version__

    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"python -m engine {__version__}\n", "")


def test_the_console_script_is_installed():
    done = subprocess.run([console_script(), "--help"], capture_output=True, text=True, timeout=60,
                          env=environment(None), check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: ai-engine [-h] [--version] [--debug] COMMAND ...")


def test_the_cli_is_not_imported_by_the_package():
    code = "import sys, engine; engine.AiClient; print('engine.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout == "False\n"


# ---------------------------------------------------------------- ENGINE_LOG

@pytest.fixture
def engine_logger() -> Iterator[logging.Logger]:
    """The engine logger, restored afterwards (handlers, level, the warned values)."""
    logger = logging.getLogger("engine")
    handlers, level = list(logger.handlers), logger.level
    warned = set(logsetup._warned)
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logsetup._warned.clear()
    logsetup._warned.update(warned)


@pytest.mark.fast
@pytest.mark.parametrize(("value", "level"), [
    ("debug", logging.DEBUG), ("INFO", logging.INFO), (" Warning ", logging.WARNING)])
def test_a_level_adds_one_stderr_handler(engine_logger, value, level):
    out = io.StringIO()
    handler = logsetup.configure(value, out)
    assert handler is not None and handler.level == level and engine_logger.level == level
    assert logsetup.configure(value) is handler  # again: the same handler, no second one
    assert [h for h in engine_logger.handlers if h.get_name() == logsetup.HANDLER_NAME] == [
        handler]
    logging.getLogger("engine.io.transport").log(level, "sent %d", 1)
    logging.getLogger("engine.io.transport").log(level - 1, "below the level")
    line = out.getvalue()
    assert line.endswith(f" {logging.getLevelName(level)} engine.io.transport: sent 1\n")
    assert line.count("\n") == 1


@pytest.mark.fast
@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_changes_nothing(engine_logger, value):
    before = (list(engine_logger.handlers), engine_logger.level)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert logsetup.configure(value) is None
    assert (list(engine_logger.handlers), engine_logger.level) == before


@pytest.mark.fast
def test_an_unknown_value_is_ignored_with_one_warning(engine_logger):
    before = (list(engine_logger.handlers), engine_logger.level)
    logsetup._warned.discard("loud")
    with pytest.warns(RuntimeWarning) as caught:
        assert logsetup.configure("loud") is None
        assert logsetup.configure("loud") is None
    assert [str(w.message) for w in caught] == [
        "ENGINE_LOG='loud' is ignored: use one of debug, info, warning"]
    assert (list(engine_logger.handlers), engine_logger.level) == before


@pytest.mark.fast
def test_configure_from_env_applies_the_variable_once(engine_logger, monkeypatch):
    monkeypatch.setattr(logsetup, "_done", False)
    monkeypatch.setattr(logsetup, "_result", None)
    monkeypatch.setenv("ENGINE_LOG", "info")
    handler = logsetup.configure_from_env()
    assert handler is not None and engine_logger.level == logging.INFO
    monkeypatch.setenv("ENGINE_LOG", "debug")
    assert logsetup.configure_from_env() is handler  # the first call decided
    assert engine_logger.level == logging.INFO and handler.level == logging.INFO


@pytest.mark.parametrize(("value", "logged"), [
    ("debug", [" DEBUG engine.client: hello"]),
    ("loud", ["RuntimeWarning: ENGINE_LOG='loud' is ignored: use one of debug, info, warning"]),
])
def test_configure_from_env_in_a_fresh_process(value, logged):
    code = ("from engine.logsetup import configure_from_env; configure_from_env(); "
            "configure_from_env()\n"
            "import logging; logging.getLogger('engine.client').debug('hello')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment({"ENGINE_LOG": value}), cwd=ROOT, check=True)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith(logged[0]), done.stderr
