"""The conformance fixture format (version 1): one recorded exchange per file.

A fixture says what the user asked (``request``), what the engine must send
(``sent``), what the provider answered (``answer``), what the user must get
(``expect``), and where the bytes came from (``source``). Files live in
``fixtures/<provider>/<name>.yaml`` under :func:`.data.data_dir` (the
repository's ``conformance/``); ``conformance/README.md`` documents every
key. :func:`load_fixtures` validates each file with a cerberus schema and
reports problems as ``file:line: key: message``.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cerberus

from ..errors import KINDS, ManifestError
from ..manifest.yamlsrc import format_path, load_yaml
from .data import data_dir

__all__ = [
    "ACCESS_KEY_ID",
    "API_KEY",
    "FIXTURES",
    "OPERATIONS",
    "OPERATION_SCENARIOS",
    "RECORDINGS",
    "SCENARIOS",
    "SIGNED",
    "SOURCE_KINDS",
    "Fixture",
    "FixtureError",
    "load_fixture",
    "load_fixtures",
    "resplit",
]

FIXTURES = data_dir() / "fixtures"
RECORDINGS = data_dir() / "recordings"
API_KEY = "sk-conformance-0000-test-key"  # what replays authenticate with
# Signing manifests: the access key id replays sign with (API_KEY is the secret), and
# the header value a fixture writes for "a Signature V4 authorization by it".
ACCESS_KEY_ID = "AKIDCONFORMANCE"
SIGNED = "{sigv4}"

# Every manifest must cover these (or declare the capability it lacks).
SCENARIOS = ("text", "multi_turn", "params", "stream_text", "tools", "tool_result",
             "stream_tools", "error_auth", "error_rate_limit", "error_in_stream")
SOURCE_KINDS = ("live-recording", "public-recording", "documentation", "constructed")
# The operations a fixture may exercise (``operation``; default chat), and the
# scenarios of the others: every manifest describing one should cover them.
OPERATIONS = ("chat", "embed", "list_models", "count_tokens")
OPERATION_SCENARIOS = {
    "embed": ("embed", "embed_batch", "embed_error"),
    "list_models": ("list_models",),
    "count_tokens": ("count_tokens",),
}

_MESSAGE = {
    "type": "dict",
    "schema": {
        "role": {"type": "string",
                 "allowed": ["system", "developer", "user", "assistant", "tool"],
                 "required": True},
        # an assistant turn's thinking, and its replay (the provider's own blocks or
        # items, as an earlier answer of the fixture's provider kept them)
        "thinking": {"type": "string"},
        "replay": {"type": "list", "minlength": 1},
        # chat.cache() after this message
        "cache": {"type": "boolean"},
        # text, or (a user turn) a list of parts: text, or {type: image | document |
        # audio, url | data_base64, media_type, name, cache}
        "content": {"type": ["string", "list"], "nullable": True, "schema": {
            "type": ["string", "dict"], "schema": {
                "type": {"type": "string", "allowed": ["text", "image", "document", "audio"],
                         "required": True},
                "text": {"type": "string"}, "url": {"type": "string"},
                "data_base64": {"type": "string"}, "media_type": {"type": "string"},
                "name": {"type": "string"}, "cache": {"type": "boolean"}}}},
        "tool_calls": {"type": "list", "schema": {"type": "dict", "schema": {
            "id": {"type": "string", "required": True},
            "name": {"type": "string", "required": True},
            # an object, or the JSON text exactly as a response returned it
            "arguments": {"type": ["dict", "string"], "required": True}}}},
        "tool_call_id": {"type": "string"},
    },
}

SCHEMA: dict[str, Any] = {
    "fixture": {"type": "integer", "allowed": [1], "required": True},
    "provider": {"type": "string", "required": True},
    "scenario": {"type": "string", "required": True},
    "model": {"type": "string", "required": True},
    "source": {"type": "dict", "required": True, "schema": {
        "kind": {"type": "string", "allowed": list(SOURCE_KINDS), "required": True},
        "origin": {"type": "string", "required": True, "empty": False},
        "notes": {"type": "string"},
    }},
    "operation": {"type": "string", "allowed": list(OPERATIONS)},
    "request": {"type": "dict", "required": True, "schema": {
        # chat and count_tokens: required (checked in load_fixture)
        "messages": {"type": "list", "minlength": 1, "schema": _MESSAGE},
        # embed: client.embed(inputs, dimensions=, input_type=, batch_size=)
        "inputs": {"type": "list", "minlength": 1, "schema": {"type": "string"}},
        "dimensions": {"type": "integer", "min": 1},
        "input_type": {"type": "string"},
        "batch_size": {"type": "integer", "min": 1},
        "params": {"type": "dict", "schema": {
            "temperature": {"type": "number"}, "max_tokens": {"type": "integer"},
            "top_p": {"type": "number"}, "top_k": {"type": "integer"},
            "stop": {"type": "list", "schema": {"type": "string"}},
            "seed": {"type": "integer"}}},
        # functions ({name, description, parameters, strict}), or a provider's own
        # tool entries as given (checked by the builder: Tool.from_dict)
        "tools": {"type": "list", "schema": {"type": "dict", "empty": False}},
        # tools(..., cache=True)
        "cache_tools": {"type": "boolean"},
        # chat.reasoning(effort=, budget_tokens=, summary=, adaptive=)
        "reasoning": {"type": "dict", "empty": False, "schema": {
            "effort": {"type": "string"}, "budget_tokens": {"type": "integer", "min": 0},
            "summary": {"type": "string"}, "adaptive": {"type": "boolean"}}},
        "tool_choice": {"type": ["string", "dict"]},
        "stream": {"type": "boolean"},
        "max_retries": {"type": "integer", "min": 0, "max": 5},
        # chat.response_format(schema, name=, strict=), or chat.json() with {json: true}
        "response_format": {"type": "dict", "schema": {
            "schema": {"type": "dict"}, "name": {"type": "string"},
            "strict": {"type": "boolean"}, "json": {"type": "boolean"}}},
        # client settings, passed to AiClient.create(settings=...)
        "settings": {"type": "dict", "valuesrules": {"type": "string"}},
    }},
    "sent": {"type": "dict", "required": True, "schema": {
        "method": {"type": "string", "required": True},
        "path": {"type": "string", "required": True, "regex": "^/.*"},
        "headers": {"type": "dict", "valuesrules": {"type": "string"}},
        "body": {"required": True, "nullable": True},
        "vary": {"type": "list", "schema": {"type": "string"}},
    }},
    "answer": {"type": "dict", "required": True, "schema": {
        "status": {"type": "integer", "required": True, "min": 100, "max": 999},
        "headers": {"type": "dict", "valuesrules": {"type": "string"}},
        "json": {"nullable": True, "excludes": ["text", "chunks", "chunks_base64", "recording"]},
        "text": {"type": "string", "excludes": ["json", "chunks", "chunks_base64", "recording"]},
        "chunks": {"type": "list", "schema": {"type": "string"},
                   "excludes": ["json", "text", "chunks_base64", "recording"]},
        "chunks_base64": {"type": "list", "schema": {"type": "string"},
                          "excludes": ["json", "text", "chunks", "recording"]},
        "recording": {"type": "string", "excludes": ["json", "text", "chunks", "chunks_base64"]},
        "split": {"type": "string", "allowed": ["events", "whole"], "dependencies": "recording"},
        # later answers, in order: a retry's (the same request), or the next request's
        # (an embed batch, a page of models) with the request it answers under `sent`
        "then": {"type": "list", "schema": {"type": "dict"}},
    }},
    "expect": {"type": "dict", "required": True, "schema": {
        "content": {"type": "string"},
        "thinking": {"type": "string", "nullable": True},
        "tool_calls": {"type": "list", "schema": {"type": "dict", "schema": {
            "id": {"type": "string"}, "name": {"type": "string", "required": True},
            "arguments": {"type": "dict", "required": True}}}},
        "finish_reason": {"type": "string",
                          "allowed": ["stop", "length", "tool_calls", "content_filter", "other"]},
        "usage": {"type": "dict", "schema": {name: {"type": "integer", "nullable": True}
                                             for name in ("prompt_tokens", "completion_tokens",
                                                          "total_tokens", "cached_tokens",
                                                          "reasoning_tokens",
                                                          "cache_write_tokens")}},
        "events": {"type": "list", "schema": {"type": "string"}},
        "attempts": {"type": "integer", "min": 1},
        "parsed": {"nullable": True},  # response.parsed (a requested format's answer)
        # response.replay: what the next request sends back, compared exactly
        "replay": {"type": "list"},
        # embed: the vectors (compared to 1e-6), their count and length, the model
        "vectors": {"type": "list", "schema": {"type": "list", "schema": {"type": "number"}}},
        "count": {"type": "integer", "min": 0},
        "dimensions": {"type": "integer", "min": 1},
        "model": {"type": "string"},
        # list_models: the models in order; each entry's keys given are compared
        "models": {"type": "list", "schema": {"type": "dict", "schema": {
            "id": {"type": "string", "required": True},
            "context_window": {"type": "integer", "nullable": True},
            "max_output": {"type": "integer", "nullable": True},
            "capabilities": {"type": "list", "schema": {"type": "string"}}}}},
        # count_tokens: the count
        "tokens": {"type": "integer", "min": 0},
        # how many requests the server must see (default: attempts for chat, else one
        # per answer)
        "requests": {"type": "integer", "min": 1},
        "error": {"type": "dict", "schema": {
            "kind": {"type": "string", "allowed": sorted(KINDS), "required": True},
            "status": {"type": "integer", "nullable": True},
            "retryable": {"type": "boolean"},
            "retry_after": {"type": "number", "nullable": True},
            "message": {"type": "string"},
        }},
    }},
}


class FixtureError(Exception):
    """A fixture file is invalid; ``problems`` are ``file:line: key: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Fixture:
    """One validated fixture file."""

    path: Path
    data: dict[str, Any]
    chunks: tuple[bytes, ...]
    follow_ups: tuple[tuple[int, dict[str, str], tuple[bytes, ...]], ...] = field(default=())

    @property
    def provider(self) -> str:
        return str(self.data["provider"])

    @property
    def scenario(self) -> str:
        return str(self.data["scenario"])

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.path.stem}"

    @property
    def request(self) -> dict[str, Any]:
        return dict(self.data["request"])

    @property
    def operation(self) -> str:
        return str(self.data.get("operation", "chat"))

    def sent_for(self, index: int) -> dict[str, Any]:
        """What request *index* (0: the first) must be: a follow-up's own ``sent``,
        else the fixture's (a retry repeats the request)."""
        then = self.data["answer"].get("then") or []
        if 0 < index <= len(then) and "sent" in then[index - 1]:
            return dict(then[index - 1]["sent"])
        return dict(self.data["sent"])

    @property
    def stream(self) -> bool:
        return bool(self.data["request"].get("stream", False))

    @property
    def status(self) -> int:
        return int(self.data["answer"]["status"])

    @property
    def answer_headers(self) -> dict[str, str]:
        return dict(self.data["answer"].get("headers") or {})


def _flatten(errors: Any, prefix: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...],
                                                                           str]]:
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, (*prefix, key))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, str):
                yield prefix, item
            else:
                yield from _flatten(item, prefix)


def split_events(body: bytes) -> list[bytes]:
    """Cut a body at its natural message boundaries, as a server flushes them.

    SSE: after each blank line (CRLF or LF); binary event-stream: per message
    by its length prefix; NDJSON: per line.
    """
    if len(body) >= 16 and body[0] == 0:  # a length prefix, not text
        return _split_eventstream(body)
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in body:
            parts = body.split(sep)
            return [p + sep for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return body.splitlines(keepends=True) or [body]


def _split_eventstream(body: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset + 4 <= len(body):
        size = int.from_bytes(body[offset:offset + 4], "big")
        if size < 16:
            break
        out.append(body[offset:offset + size])
        offset += size
    if offset < len(body):
        out.append(body[offset:])
    return out


def resplit(chunks: tuple[bytes, ...], seed: str) -> tuple[bytes, ...]:
    """The same bytes cut at reproducible random points (1-byte pieces included)."""
    body = b"".join(chunks)
    rng = random.Random(seed)
    if len(body) < 2:
        return (body,)
    count = rng.randint(1, min(len(body) - 1, max(1, len(body) // 3)))
    points = sorted(rng.sample(range(1, len(body)), count))
    if rng.random() < 0.5:  # also cut near the front into single bytes
        points = sorted(set(points) | set(range(1, min(len(body), 6))))
    edges = [0, *points, len(body)]
    return tuple(body[a:b] for a, b in itertools.pairwise(edges))


def _answer_chunks(answer: dict[str, Any], path: Path) -> tuple[bytes, ...]:
    if "json" in answer:
        return (json.dumps(answer["json"], ensure_ascii=False).encode("utf-8"),)
    if "text" in answer:
        return (answer["text"].encode("utf-8"),)
    if "chunks" in answer:
        return tuple(c.encode("utf-8") for c in answer["chunks"])
    if "chunks_base64" in answer:
        return tuple(base64.b64decode(c) for c in answer["chunks_base64"])
    if "recording" in answer:
        file = RECORDINGS / answer["recording"]
        if not file.is_file():
            raise FixtureError([f"{path}:1: answer.recording: no recording {file.name!r} in "
                                f"{RECORDINGS}"])
        body = file.read_bytes()
        split = answer.get("split", "events")
        return tuple(split_events(body)) if split == "events" else (body,)
    return (b"",)


def load_fixture(path: Path) -> Fixture:
    """Load and validate one fixture file (raise FixtureError listing every problem)."""
    try:
        data, lines = load_yaml(path.read_bytes(), str(path))
    except ManifestError as exc:
        raise FixtureError([exc.message]) from None
    if not isinstance(data, dict):
        raise FixtureError([f"{path}:1: (top): a fixture must be a mapping"])
    validator = cerberus.Validator(SCHEMA, allow_unknown=False)
    if not validator.validate(data):
        problems = []
        for key, message in _flatten(validator.errors, ()):
            line = next((lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in lines), 1)
            problems.append(f"{path}:{line}: {format_path(key)}: {message}")
        raise FixtureError(problems)
    if data["provider"] != path.parent.name:
        raise FixtureError([f"{path}:{lines.get(('provider',), 1)}: provider: must equal the "
                            f"directory name {path.parent.name!r}"])
    problems = _operation_problems(data, path, lines)
    answer = data["answer"]
    then = answer.get("then") or []
    for i, item in enumerate(then):
        problems += _follow_up_problems(item, path, lines, i)
    if problems:
        raise FixtureError(problems)
    follow = tuple((int(a["status"]), dict(a.get("headers") or {}), _answer_chunks(a, path))
                   for a in then)
    return Fixture(path, data, _answer_chunks(answer, path), follow)


# What each operation's request needs, and may not have.
_REQUEST_KEYS = {
    "chat": ({"messages"}, {"inputs", "dimensions", "input_type", "batch_size"}),
    "count_tokens": ({"messages"}, {"inputs", "dimensions", "input_type", "batch_size",
                                    "stream"}),
    "embed": ({"inputs"}, {"messages", "tools", "tool_choice", "stream", "params",
                           "response_format"}),
    "list_models": (set(), {"messages", "inputs", "dimensions", "input_type", "batch_size",
                            "tools", "tool_choice", "stream", "params", "response_format"}),
}


def _operation_problems(data: dict[str, Any], path: Path,
                        lines: dict[tuple[Any, ...], int]) -> list[str]:
    op = data.get("operation", "chat")
    needs, refuses = _REQUEST_KEYS[op]
    request = data["request"]
    where = lines.get(("request",), 1)
    problems = [f"{path}:{where}: request.{key}: required by operation {op}"
                for key in sorted(needs - set(request))]
    problems += [f"{path}:{lines.get(('request', key), where)}: request.{key}: not taken by "
                 f"operation {op}" for key in sorted(refuses & set(request))]
    return problems


_FOLLOW_UP = {
    "status": {"type": "integer", "required": True, "min": 100, "max": 999},
    "headers": {"type": "dict", "valuesrules": {"type": "string"}},
    "json": {"nullable": True}, "text": {"type": "string"},
    "chunks": {"type": "list", "schema": {"type": "string"}},
    "chunks_base64": {"type": "list", "schema": {"type": "string"}},
    "recording": {"type": "string"},
    "split": {"type": "string", "allowed": ["events", "whole"]},
    "sent": {**SCHEMA["sent"], "required": False},
}


def _follow_up_problems(item: Any, path: Path, lines: dict[tuple[Any, ...], int],
                        index: int) -> list[str]:
    validator = cerberus.Validator(_FOLLOW_UP, allow_unknown=False)
    if isinstance(item, dict) and validator.validate(item):
        return []
    errors = validator.errors if isinstance(item, dict) else {"": ["must be a mapping"]}
    key = ("answer", "then", index)
    return [f"{path}:{lines.get(key, 1)}: {format_path((*key, *k))}: {m}"
            for k, m in _flatten(errors, ())]


def load_fixtures(root: Path = FIXTURES) -> tuple[list[Fixture], list[str]]:
    """Every fixture under *root*, and every problem found on the way."""
    fixtures, problems = [], []
    for path in sorted(root.glob("*/*.yaml")):
        try:
            fixtures.append(load_fixture(path))
        except FixtureError as exc:
            problems.extend(exc.problems)
    return fixtures, problems
