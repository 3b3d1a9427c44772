"""Map a provider's decoded JSON answer to a :class:`ChatResponse`. Pure.

Shared normalization used by the non-stream mapper and the stream
accumulator: tool-call argument parsing (a JSON string, an object, ``""`` or
``"null"`` for none), synthesized tool-call ids, finish-reason mapping
(exact, then case-insensitive; unknown values are ``other``; a normal stop
that returned tool calls is ``tool_calls``), and usage with a computed total.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from .classify import classify
from .errors import EngineError
from .manifest import Manifest
from .paths import Path, PathError
from .types import ChatResponse, FinishReason, ToolCall, Usage

__all__ = [
    "make_usage",
    "map_response",
    "normalize_finish",
    "parse_arguments",
    "synthesize_id",
    "tool_call_from",
]

log = logging.getLogger("engine")


def synthesize_id() -> str:
    """A tool-call id for providers that give none."""
    return "call_" + uuid.uuid4().hex[:24]


def parse_arguments(value: Any, provider: str) -> dict[str, Any]:
    """Tool-call arguments as a dict: objects pass, JSON text is parsed once."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or text == "null":
            return {}
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise EngineError("malformed_response",
                              f"tool-call arguments are not valid JSON ({exc}): {text[:80]!r}",
                              provider=provider) from None
        if parsed is None:
            return {}
        if isinstance(parsed, dict):
            return parsed
    raise EngineError("malformed_response",
                      f"tool-call arguments must be a JSON object, got {type(value).__name__}",
                      provider=provider)


def tool_call_from(item: Any, provider: str) -> ToolCall:
    if not isinstance(item, Mapping) or not item.get("name"):
        raise EngineError("malformed_response", f"tool call without a name: {item!r:.120}",
                          provider=provider)
    call_id = item.get("id")
    raw = item.get("arguments")
    extra = item.get("extra")
    return ToolCall(
        id=str(call_id) if call_id else synthesize_id(),
        name=str(item["name"]),
        arguments=parse_arguments(raw, provider),
        raw_arguments=raw if isinstance(raw, str) else None,
        extra={k: v for k, v in extra.items() if v is not None}
        if isinstance(extra, Mapping) else {},
    )


def normalize_finish(manifest: Manifest, raw: Any, has_tool_calls: bool) -> FinishReason:
    mapped: str = "other"
    if raw is not None:
        key = str(raw)
        table = manifest.finish_reasons
        found = table.get(key)
        if found is None:
            lowered = key.lower()
            found = next((v for k, v in table.items() if k.lower() == lowered), None)
        mapped = found or "other"
    if has_tool_calls and (mapped == "stop" or raw is None):
        return "tool_calls"
    return mapped  # type: ignore[return-value]  # values are validated by the schema


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise EngineError("malformed_response", f"a token count is {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    return None


def make_usage(values: Mapping[str, Any]) -> Usage:
    prompt = _int(values.get("prompt_tokens")) or 0
    completion = _int(values.get("completion_tokens")) or 0
    total = _int(values.get("total_tokens"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if total is not None else prompt + completion,
        cached_tokens=_int(values.get("cached_tokens")),
        reasoning_tokens=_int(values.get("reasoning_tokens")),
    )


def _search(path: Path | None, data: Any, manifest: Manifest, what: str) -> Any:
    if path is None:
        return None
    try:
        return path.search(data)
    except PathError as exc:
        raise EngineError("malformed_response", f"cannot read {what}: {exc}",
                          provider=manifest.id) from None


def _joined(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return str(value)


def map_response(manifest: Manifest, data: Any, model: str) -> ChatResponse:
    """The normalized response; ``malformed_response`` when *data* has the wrong shape."""
    spec = manifest.chat.response
    pid = manifest.id
    if not isinstance(data, dict):
        raise EngineError("malformed_response",
                          f"expected a JSON object, got {type(data).__name__}", provider=pid)
    if spec.error is not None and _search(spec.error, data, manifest, "error"):
        raise classify(manifest, None, {}, data=data)
    content = _joined(_search(spec.content, data, manifest, "content"))
    thinking = _joined(_search(spec.thinking, data, manifest, "thinking")) or None
    raw_calls = _search(spec.tool_calls, data, manifest, "tool calls") or []
    if not isinstance(raw_calls, list):
        raise EngineError("malformed_response", "tool calls must be a list", provider=pid)
    calls = [tool_call_from(item, pid) for item in raw_calls]
    raw_finish = _search(spec.finish_reason, data, manifest, "finish reason")
    if not content and not calls and raw_finish is None and thinking is None:
        raise EngineError("malformed_response",
                          "the response has no content, tool calls or finish reason "
                          f"where the manifest expects them: {json.dumps(data)[:160]}",
                          provider=pid)
    usage = make_usage({name: _search(p, data, manifest, name) for name, p in spec.usage.items()})
    return ChatResponse(
        content=content,
        thinking=thinking,
        tool_calls=calls,
        finish_reason=normalize_finish(manifest, raw_finish, bool(calls)),
        usage=usage,
        raw=data,
        model=model,
        provider=pid,
    )
