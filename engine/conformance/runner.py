"""The one conformance runner behind ``python -m engine.conformance`` and the pytest cases.

Each case drives the public API (``engine.AiClient``) against a real HTTP
server on 127.0.0.1 that checks the request the engine sent against the
fixture and replays the recorded answer at its recorded chunk boundaries.
Stream fixtures run a second time with the same bytes re-split at
reproducible random points. A manifest that declares it lacks a capability
gets a refusal case instead: the engine must refuse the request before
sending anything. Known failures need a written reason in
``known_failures.yaml``; one that starts passing is reported, so the list
cannot go stale.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import AiClient, EngineError, Message, Part
from ..clock import Clock
from ..manifest.load import load_manifest
from ..manifest.locate import find_manifest, search_dirs
from ..manifest.model import Manifest
from ..protocol.auth import SIGNING_SCHEME
from ..protocol.settings import render_base_url, samples
from .data import data_dir
from .features import FEATURES, REFUSAL_MODEL, refusable
from .fixture import (
    ACCESS_KEY_ID,
    API_KEY,
    OPERATION_SCENARIOS,
    SCENARIOS,
    SIGNED,
    Fixture,
    load_fixtures,
    resplit,
)
from .server import RecordedRequest, ReplayServer, ScriptedResponse

__all__ = [
    "ALL_SCENARIOS",
    "KNOWN_FAILURES",
    "OPERATION_OF",
    "Case",
    "Outcome",
    "build_cases",
    "coverage",
    "known_failures",
    "lacks",
    "manifest_ids",
    "rle",
    "run_case",
    "run_cases",
    "summarize",
]

KNOWN_FAILURES = data_dir() / "known_failures.yaml"

# Scenario -> the capability whose absence makes it a refusal case.
NEEDS = {"tools": "tools", "tool_result": "tools", "stream_tools": "stream",
         "stream_text": "stream", "error_in_stream": "stream"}


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    scenario: str
    kind: str  # "fixture" | "resplit" | "refusal"
    fixture: Fixture | None = None
    chunks: tuple[bytes, ...] = ()


@dataclass
class Outcome:
    case: Case
    status: str  # "pass" | "fail" | "known"
    problems: list[str] = field(default_factory=list)


class _NoSleep(Clock):
    """Retries in replays wait for nothing; the delays are recorded."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def known_failures(path: Path = KNOWN_FAILURES) -> dict[str, str]:
    """``case id -> reason``; every entry must give a reason."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip()
                                             for v in data.values()):
        raise ValueError(f"{path}: expected 'provider/fixture: reason' entries, each with a reason")
    return {str(k): str(v) for k, v in data.items()}


def manifest_ids() -> list[str]:
    """Every manifest on the search path (built-in and AI_PROTOCOL_PATH)."""
    ids: set[str] = set()
    for directory in search_dirs():
        if directory.is_dir():
            ids.update(p.stem for p in directory.glob("*.yaml"))
    return sorted(i for i in ids if find_manifest(i) is not None)


# Scenario -> the operation it exercises (the chat scenarios: chat).
OPERATION_OF = {scenario: op for op, names in OPERATION_SCENARIOS.items() for scenario in names}
ALL_SCENARIOS = (*SCENARIOS, *OPERATION_OF)
# The scenario whose case is the refusal of an operation a manifest does not describe.
REFUSED_AS = {"chat": "text", **{op: names[0] for op, names in OPERATION_SCENARIOS.items()}}


def lacks(manifest: Manifest, scenario: str) -> str | None:
    """What *manifest* lacks to run *scenario*: ``operation`` (it does not describe the
    scenario's operation), a capability, or None."""
    if getattr(manifest, OPERATION_OF.get(scenario, "chat")) is None:
        return "operation"
    need = NEEDS.get(scenario)
    if need == "tools" and scenario != "stream_tools" and not manifest.tools:
        return "tools"
    if scenario == "stream_tools" and not (manifest.tools and manifest.stream):
        return "stream" if not manifest.stream else "tools"
    if need == "stream" and not manifest.stream:
        return "stream"
    if scenario == "error_in_stream" and not manifest.stream_errors:
        return "stream_errors"
    return None


def build_cases(fixtures: Iterable[Fixture], providers: Iterable[str]) -> list[Case]:
    """Fixture cases, their re-split twins, and refusal cases for declared gaps."""
    cases: list[Case] = []
    for fx in fixtures:
        cases.append(Case(fx.id, fx.provider, fx.scenario, "fixture", fx, fx.chunks))
        if fx.stream and fx.status < 400:
            cases.append(Case(f"{fx.id}[resplit]", fx.provider, fx.scenario, "resplit", fx,
                              resplit(fx.chunks, fx.id)))
    for provider in providers:
        manifest = load_manifest(provider)
        for scenario in ALL_SCENARIOS:
            lack = lacks(manifest, scenario)
            refused = lack in ("tools", "stream") or (
                lack == "operation" and scenario in REFUSED_AS.values())
            if refused:
                cases.append(Case(f"{provider}/{scenario}[refused]", provider, scenario,
                                  "refusal"))
        cases += [Case(f"{provider}/{feature}[refused]", provider, feature, "refusal")
                  for feature in FEATURES if refusable(manifest, feature)]
    return cases


def coverage(outcomes: Iterable[Outcome], providers: Iterable[str]) -> dict[str, dict[str, str]]:
    """``provider -> scenario -> pass | FAIL | known | refused | n/a | missing``."""
    table: dict[str, dict[str, str]] = {p: {} for p in providers}
    for outcome in outcomes:
        row = table.setdefault(outcome.case.provider, {})
        if outcome.case.scenario not in ALL_SCENARIOS:
            continue
        current = row.get(outcome.case.scenario)
        label = {"pass": "refused" if outcome.case.kind == "refusal" else "pass",
                 "fail": "FAIL", "known": "known"}[outcome.status]
        if current is None or current in ("pass", "refused") or label == "FAIL":
            row[outcome.case.scenario] = label
    for provider, row in table.items():
        manifest = load_manifest(provider)
        for scenario in ALL_SCENARIOS:
            if scenario not in row:
                row[scenario] = ("n/a" if lacks(manifest, scenario) in ("stream_errors",
                                                                         "operation")
                                 else "missing")
    return table


# ---------------------------------------------------------------- running

def _build(client: AiClient, request: dict[str, Any]) -> Any:
    chat = client.chat()
    for raw in request["messages"]:
        content = raw.get("content")
        if isinstance(content, list):
            chat.user([_part(item) for item in content])
        else:
            # a fixture's replay was kept from an answer of its own provider
            extra = {"replay_provider": client.provider} if raw.get("replay") else {}
            chat.message(Message.from_dict({k: v for k, v in {**raw, **extra}.items()
                                            if k != "cache"}))
        if raw.get("cache"):
            chat.cache()
    fmt = request.get("response_format")
    if fmt is not None:
        if fmt.get("json"):
            chat.json()
        else:
            chat.response_format(fmt["schema"], name=fmt.get("name"),
                                 strict=fmt.get("strict", True))
    params = request.get("params") or {}
    setters: dict[str, Callable[[Any], Any]] = {
        "temperature": chat.temperature, "max_tokens": chat.max_tokens,
        "top_p": chat.top_p, "top_k": chat.top_k, "stop": chat.stop, "seed": chat.seed}
    for name, value in params.items():
        setters[name](value)
    if request.get("tools"):
        chat.tools(request["tools"], cache=request.get("cache_tools", False))
    if request.get("reasoning"):
        chat.reasoning(**request["reasoning"])
    if request.get("tool_choice") is not None:
        chat.tool_choice(request["tool_choice"])
    return chat


def _part(item: Any) -> str | Part:
    """A fixture's part: a string, or a mapping with url or data_base64."""
    if isinstance(item, str):
        return item
    kind = item["type"]
    if kind == "text":
        return Part.text(item.get("text", ""), cache=item.get("cache", False))
    data = base64.b64decode(item["data_base64"]) if "data_base64" in item else None
    extra = {"name": item["name"]} if "name" in item else {}
    maker = {"image": Part.image, "document": Part.document, "audio": Part.audio}[kind]
    return maker(url=item.get("url"), data=data, media_type=item.get("media_type"),
                 cache=item.get("cache", False), **extra)


def _get(data: Any, path: str) -> tuple[bool, Any]:
    current = data
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if name:
            if not isinstance(current, dict) or name not in current:
                return False, None
            current = current[name]
        else:
            i = int(index)
            if not isinstance(current, list) or i >= len(current):
                return False, None
            current = current[i]
    return True, current


def _drop(data: Any, path: str) -> None:
    parts = re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    parent_path = path[: path.rfind(parts[-1][0] or f"[{parts[-1][1]}]")].rstrip(".")
    ok, parent = _get(data, parent_path) if parent_path else (True, data)
    name, index = parts[-1]
    if ok and name and isinstance(parent, dict):
        parent.pop(name, None)
    elif ok and index and isinstance(parent, list):
        parent[int(index)] = "<varies>"


def check_sent(fx: Fixture, request: RecordedRequest, index: int = 0) -> list[str]:
    """Differences between what the engine sent as request *index* and what the fixture
    says it must."""
    sent = fx.sent_for(index)
    problems = []
    if request.method != sent["method"]:
        problems.append(f"method: sent {request.method}, fixture says {sent['method']}")
    if request.path != sent["path"]:
        problems.append(f"path: sent {request.path!r}, fixture says {sent['path']!r}")
    for name, value in (sent.get("headers") or {}).items():
        want = value.replace("{api_key}", API_KEY)
        got = request.header(name)
        if value == SIGNED:  # a Signature V4 authorization by the replay's access key
            if not (got or "").startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"):
                problems.append(f"header {name}: sent {got!r}, fixture says a Signature V4 "
                                f"authorization by {ACCESS_KEY_ID}")
            continue
        if got != want:
            problems.append(f"header {name}: sent {got!r}, fixture says {want!r}")
    try:
        body = json.loads(request.body) if request.body else None
    except ValueError:
        return [*problems, f"body is not JSON: {request.body[:80]!r}"]
    expected = json.loads(json.dumps(sent["body"]))
    for path in sent.get("vary") or []:
        if not _get(body, path)[0]:
            problems.append(f"body.{path}: missing (it may vary, but must be sent)")
        _drop(body, path)
        _drop(expected, path)
    if body != expected:
        problems.append("body differs:\n    sent:    " + json.dumps(body, sort_keys=True) +
                        "\n    fixture: " + json.dumps(expected, sort_keys=True))
    return problems


def rle(types: list[str]) -> list[str]:
    out: list[str] = []
    count = 0
    for i, name in enumerate(types):
        count += 1
        if i + 1 == len(types) or types[i + 1] != name:
            out.append(name if count == 1 else f"{name}*{count}")
            count = 0
    return out


def _compare(expect: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("content", "thinking", "finish_reason", "events", "attempts", "parsed",
                "replay"):
        if key in expect and expect[key] != got.get(key):
            problems.append(f"{key}: got {got.get(key)!r}, expected {expect[key]!r}")
    if "tool_calls" in expect:
        calls = got.get("tool_calls") or []
        want = expect["tool_calls"]
        trimmed = [{k: c[k] for k in ("id", "name", "arguments") if k in w}
                   for c, w in zip(calls, want, strict=False)]
        if len(calls) != len(want) or trimmed != want:
            problems.append(f"tool_calls: got {calls!r}, expected {want!r}")
        if any(not c["id"] for c in calls):
            problems.append("tool_calls: every call needs a non-empty id")
    for name, value in (expect.get("usage") or {}).items():
        if got.get("usage", {}).get(name) != value:
            problems.append(f"usage.{name}: got {got.get('usage', {}).get(name)!r}, "
                            f"expected {value!r}")
    return problems


def _compare_error(expect: dict[str, Any], error: EngineError | None) -> list[str]:
    if error is None:
        return [f"expected a {expect['kind']} error, got a response"]
    problems = []
    for key in ("kind", "status", "retryable"):
        if key in expect and getattr(error, key) != expect[key]:
            problems.append(f"error.{key}: got {getattr(error, key)!r}, expected {expect[key]!r}")
    if "retry_after" in expect:
        want, got = expect["retry_after"], error.retry_after
        if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-6):
            problems.append(f"error.retry_after: got {got!r}, expected {want!r}")
    if "message" in expect and expect["message"] not in error.message:
        problems.append(f"error.message: {error.message!r} lacks {expect['message']!r}")
    if API_KEY in str(error) or API_KEY in repr(error):
        problems.append("the API key appears in the error text")
    return problems


def _key_for(manifest: Manifest) -> str:
    """What a replay authenticates with: the key, or for a signing manifest an access
    key id and the key as its secret (so the secret-leak check covers it)."""
    return f"{ACCESS_KEY_ID}:{API_KEY}" if manifest.auth.scheme == SIGNING_SCHEME else API_KEY


def _base_path(manifest: Manifest, settings: dict[str, str]) -> str:
    """The path of the provider's base URL (its settings filled in), kept on the replay
    server so that ``sent.path`` is the whole path the provider would receive."""
    given = {**samples(manifest), **settings}
    url = render_base_url(manifest, given) or manifest.base_url
    return urlsplit(url).path.rstrip("/")


def _scripted(status: int, headers: dict[str, str], chunks: tuple[bytes, ...],
              stream: bool) -> ScriptedResponse:
    return ScriptedResponse(status=status, headers=list(headers.items()), chunks=list(chunks),
                            chunked=True if stream and len(chunks) > 1 else None)


async def _run_fixture(case: Case, server: ReplayServer) -> list[str]:
    fx = case.fixture
    assert fx is not None
    answers = [(fx.status, fx.answer_headers, case.chunks), *fx.follow_ups]
    mismatches: list[str] = []
    seen: list[RecordedRequest] = []

    def handler(request: RecordedRequest) -> ScriptedResponse:
        seen.append(request)
        mismatches.extend(f"request #{len(seen)}: {p}"
                          for p in check_sent(fx, request, len(seen) - 1))
        status, headers, chunks = answers[min(len(seen), len(answers)) - 1]
        return _scripted(status, headers, chunks, fx.stream)

    server.handler = handler
    manifest = load_manifest(fx.provider)
    request = fx.request
    settings = dict(request.get("settings") or {})
    base = _base_path(manifest, settings)
    clock = _NoSleep()
    got: dict[str, Any] = {}
    error: EngineError | None = None
    async with await AiClient.create(f"{fx.provider}/{fx.data['model']}",
                                     api_key=_key_for(manifest),
                                     base_url=server.url + base, clock=clock,
                                     max_retries=request.get("max_retries", 0),
                                     settings=settings) as client:
        try:
            if fx.operation != "chat":
                got = await _operation(client, fx.operation, request)
            elif fx.stream:
                got, error = await _stream(_build(client, request))
            else:
                response, stats = await _build(client, request).execute_with_stats()
                got = summarize(response)
                got["attempts"] = stats.attempts
        except EngineError as exc:
            error = exc
    expect = fx.data["expect"]
    problems = list(mismatches)
    if error is not None and "attempts" in expect:
        got["attempts"] = error.attempts
    compare = _compare if fx.operation == "chat" else _compare_operation
    if "error" in expect:
        problems += _compare_error(expect["error"], error)
        problems += compare({k: v for k, v in expect.items() if k != "error"}, got)
    elif error is not None:
        problems.append(f"unexpected error: {error!r}")
    else:
        problems += compare(expect, got)
    want_requests = expect.get("requests", expect.get(
        "attempts", 1 if fx.operation == "chat" else len(answers)))
    if len(seen) != want_requests:
        problems.append(f"the server saw {len(seen)} request(s), expected {want_requests}")
    return problems


def summarize(response: Any) -> dict[str, Any]:
    usage = response.usage
    return {
        "content": response.content,
        "thinking": response.thinking,
        "finish_reason": response.finish_reason,
        "tool_calls": [c.to_dict() for c in response.tool_calls],
        "parsed": response.parsed,
        "replay": list(response.replay),
        "usage": {"prompt_tokens": usage.prompt_tokens,
                  "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total_tokens, "cached_tokens": usage.cached_tokens,
                  "reasoning_tokens": usage.reasoning_tokens,
                  "cache_write_tokens": usage.cache_write_tokens},
    }


async def _operation(client: AiClient, operation: str, request: dict[str, Any]
                     ) -> dict[str, Any]:
    """Run embed, list_models or count_tokens as the fixture's request says."""
    if operation == "embed":
        emb, stats = await client.embed_with_stats(
            request["inputs"], dimensions=request.get("dimensions"),
            input_type=request.get("input_type"), batch_size=request.get("batch_size"))
        return {"vectors": emb.vectors, "count": len(emb.vectors),
                "dimensions": len(emb.vectors[0]) if emb.vectors else None,
                "model": emb.model, "attempts": stats.attempts,
                "usage": {"prompt_tokens": emb.usage.prompt_tokens,
                          "total_tokens": emb.usage.total_tokens}}
    if operation == "list_models":
        models = await client.list_models()
        return {"count": len(models), "models": [
            {"id": m.id, "context_window": m.context_window, "max_output": m.max_output,
             "capabilities": sorted(m.capabilities)} for m in models]}
    return {"tokens": await _build(client, request).count_tokens()}


def _compare_operation(expect: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between an operation's expected and actual results."""
    problems = []
    for key in ("count", "dimensions", "model", "tokens", "attempts"):
        if key in expect and expect[key] != got.get(key):
            problems.append(f"{key}: got {got.get(key)!r}, expected {expect[key]!r}")
    if "vectors" in expect:
        vectors = got.get("vectors") or []
        want = expect["vectors"]
        if len(vectors) != len(want) or any(
                len(v) != len(w) or any(abs(a - b) > 1e-6 for a, b in zip(v, w, strict=True))
                for v, w in zip(vectors, want, strict=False)):
            problems.append(f"vectors: got {vectors!r:.300}, expected {want!r:.300}")
    for name, value in (expect.get("usage") or {}).items():
        if got.get("usage", {}).get(name) != value:
            problems.append(f"usage.{name}: got {got.get('usage', {}).get(name)!r}, "
                            f"expected {value!r}")
    if "models" in expect:
        listed = got.get("models") or []
        want_models = expect["models"]
        trimmed = [{k: (sorted(m[k]) if k == "capabilities" else m[k]) for k in w}
                   for m, w in zip(listed, want_models, strict=False)]
        wanted = [{k: (sorted(v) if k == "capabilities" else v) for k, v in w.items()}
                  for w in want_models]
        if len(listed) != len(want_models) or trimmed != wanted:
            problems.append(f"models: got {listed!r:.400}, expected {want_models!r:.400}")
    return problems


async def _stream(chat: Any) -> tuple[dict[str, Any], EngineError | None]:
    stream = chat.stream()
    types: list[str] = []
    text: list[str] = []
    thinking: list[str] = []
    try:
        async with stream:
            async for event in stream:
                types.append(event.type)
                if event.is_content_delta:
                    text.append(event.as_content_delta.text)
                elif event.is_thinking_delta:
                    thinking.append(event.as_thinking_delta.text)
    except EngineError as exc:
        # What the user saw before the error: the delivered events.
        return {"content": "".join(text), "thinking": "".join(thinking) or None,
                "events": rle(types), "attempts": exc.attempts}, exc
    got = summarize(stream.response)
    got["events"] = rle(types)
    got["attempts"] = stream.stats.attempts
    if got["content"] != "".join(text):
        got["content"] += " <differs from the delivered deltas>"
    return got, None


async def _run_refusal(case: Case, server: ReplayServer) -> list[str]:
    seen: list[RecordedRequest] = []

    def handler(request: RecordedRequest) -> ScriptedResponse:
        seen.append(request)
        return ScriptedResponse.json({"error": "this request should have been refused"}, 599)

    server.handler = handler
    manifest = load_manifest(case.provider)
    settings = samples(manifest)
    base = _base_path(manifest, settings)
    tool = {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}
    async with await AiClient.create(f"{case.provider}/{REFUSAL_MODEL}",
                                     api_key=_key_for(manifest),
                                     base_url=server.url + base, max_retries=0,
                                     settings=settings) as client:
        try:
            if OPERATION_OF.get(case.scenario) == "embed":
                await client.embed(["Paris"])
                return ["the request was not refused"]
            if OPERATION_OF.get(case.scenario) == "list_models":
                await client.list_models()
                return ["the request was not refused"]
            chat = client.chat().user("What is the weather in Paris?")
            if OPERATION_OF.get(case.scenario) == "count_tokens":
                await chat.count_tokens()
                return ["the request was not refused"]
            if NEEDS.get(case.scenario) == "tools" or case.scenario == "stream_tools":
                chat.tools([tool])
            _with_feature(chat, case.scenario)
            if case.scenario.startswith("stream") or case.scenario in (
                    "error_in_stream", "structured_stream"):
                async for _ in chat.stream():
                    pass
            else:
                await chat.execute()
        except EngineError as exc:
            if exc.kind != "invalid_request":
                return [f"expected a clear invalid_request refusal, got {exc!r}"]
            return [f"the request reached the server ({len(seen)} request(s))"] if seen else []
    return ["the request was not refused"]


# What a feature refusal case sends: a tiny file of each kind, a format, a control.
_FILES = {"image": (b"\x89PNG\r\n\x1a\n" + bytes(24), "image/png"),
          "document": (b"%PDF-1.4\n%%EOF\n", "application/pdf"),
          "audio": (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav")}
_ANSWER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def _with_feature(chat: Any, feature: str) -> None:
    """Add *feature* (one of FEATURES; anything else: nothing) to *chat*."""
    if feature in _FILES:
        data, media_type = _FILES[feature]
        maker = {"image": Part.image, "document": Part.document, "audio": Part.audio}[feature]
        chat.user(["And this?", maker(data=data, media_type=media_type)])
    elif feature in ("structured", "structured_stream"):
        chat.response_format(_ANSWER_SCHEMA, name="Answer")
    elif feature == "json":
        chat.json()
    elif feature == "reasoning":
        chat.reasoning(effort="high")
    elif feature == "cache":
        chat.cache()


async def run_case(case: Case, server: ReplayServer, known: dict[str, str]) -> Outcome:
    """Run one case; a known failure that fails is 'known', one that passes is a failure."""
    try:
        if case.kind == "refusal":
            problems = await _run_refusal(case, server)
        else:
            problems = await _run_fixture(case, server)
    except Exception as exc:  # a crash is a failed case, reported, never a traceback
        problems = [f"crashed: {type(exc).__name__}: {exc}"]
    reason = known.get(case.id) or known.get(case.id.split("[")[0])
    if reason is not None:
        if problems:
            return Outcome(case, "known", [f"known failure: {reason}", *problems])
        return Outcome(case, "fail", [f"listed as a known failure ({reason}) but it passes: "
                                      "remove it from known_failures.yaml"])
    return Outcome(case, "fail" if problems else "pass", problems)


async def run_cases(cases: list[Case]) -> list[Outcome]:
    known = known_failures()
    with ReplayServer() as server:
        return [await run_case(case, server, known) for case in cases]


def all_cases(root: Path | None = None) -> tuple[list[Case], list[str], list[str]]:
    """(cases, fixture problems, providers) for everything present."""
    fixtures, problems = load_fixtures(root) if root else load_fixtures()
    providers = manifest_ids()
    unknown = sorted({f.provider for f in fixtures} - set(providers))
    problems += [f"{f.path}:1: provider: no manifest named {f.provider!r}" for f in fixtures
                 if f.provider in unknown]
    fixtures = [f for f in fixtures if f.provider not in unknown]
    return build_cases(fixtures, providers), problems, providers
