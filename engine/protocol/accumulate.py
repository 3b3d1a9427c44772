"""The accumulator: deltas in, events and the final :class:`ChatResponse` out. Pure.

This is the one module that builds :class:`~engine.events.StreamEvent`,
:class:`~engine.types.ToolCall` and :class:`~engine.types.ChatResponse`. A
streamed answer is a sequence of deltas (one per mapped frame); a whole answer
is one complete delta through the same :meth:`Accumulator.apply`, so both
agree on every normalization:

* text: a string is itself, a list contributes its string items, a number its
  JSON text; anything else (an object, a boolean) contributes nothing;
* tool calls: fragments are kept per call (by key, by id, else the last call)
  and their argument text is parsed once, when the call ends (linear time);
  arguments are a JSON object text, an object, or ``""``/``"null"`` for none;
  a call without an id gets a synthesized one when it starts;
* the finish reason is mapped through the manifest's table (exact, then
  case-insensitive; unknown values are ``other``); a normal stop, or no reason,
  with tool calls is ``tool_calls``;
* usage is the last value seen per field, with a computed total;
* replay (what the provider needs back verbatim): whole items, and blocks
  assembled by key from a start object, appended text, JSON text parsed once
  when the answer ends, and pushed items, in order of first appearance; a start
  object is copied, never changed (it is also on the raw list).

Events come out in the order their parts arrive in a delta: thinking, content,
tool-call starts and argument deltas, tool-call ends; the end of the answer
adds the ends of still-open calls, a usage event (when there was usage) and
``Finished``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import EngineError, excerpt
from ..events import (
    ContentDelta,
    Finished,
    StreamEvent,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnded,
    ToolCallStarted,
    UsageUpdate,
)
from ..manifest.model import Manifest
from ..types import ChatResponse, FinishReason, ToolCall, Usage
from .rules import CallPart, Delta, ReplayPart, map_body

__all__ = [
    "Accumulator",
    "make_usage",
    "map_whole",
    "normalize_finish",
    "parse_arguments",
    "synthesize_id",
    "text_of",
]

_UNSET_RAW = Delta().raw


def synthesize_id() -> str:
    """A tool-call id for providers that give none."""
    return "call_" + uuid.uuid4().hex[:24]


def text_of(value: Any) -> str:
    """The text a content or thinking value contributes (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return ""


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
        except (ValueError, RecursionError) as exc:
            raise EngineError("malformed_response",
                              f"tool-call arguments are not valid JSON ({exc}): "
                              f"{excerpt(text, 80)!r}",
                              provider=provider) from None
        if parsed is None:
            return {}
        if isinstance(parsed, dict):
            return parsed
    raise EngineError("malformed_response",
                      f"tool-call arguments must be a JSON object, got {type(value).__name__}",
                      provider=provider)


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
        cache_write_tokens=_int(values.get("cache_write_tokens")),
    )


def map_whole(manifest: Manifest, data: Any, model: str) -> ChatResponse:
    """A whole answer's normalized response: one complete delta through the accumulator."""
    accumulator = Accumulator(manifest, model, emit=False)
    accumulator.apply(map_body(manifest, data))
    return accumulator.whole(data)


class _Call:
    """One tool call being assembled."""

    __slots__ = ("args", "extra", "fragments", "id", "index", "name", "open", "result")

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.fragments: list[str] = []
        self.args: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.open = True
        self.result: ToolCall | None = None  # set when the call ends


FieldPath = tuple[str, ...]


class _Block:
    """One replay block being assembled (see the module docstring)."""

    __slots__ = ("base", "json", "pushed", "texts")

    def __init__(self, base: Any) -> None:
        self.base: Mapping[str, Any] = base if isinstance(base, Mapping) else {}
        self.texts: dict[FieldPath, list[str]] = {}
        self.json: dict[FieldPath, list[str]] = {}
        self.pushed: dict[FieldPath, list[Any]] = {}

    def build(self, provider: str) -> dict[str, Any]:
        out = dict(self.base)
        for name, pieces in self.texts.items():
            before = _lookup(self.base, name)
            _put(out, name, (before if isinstance(before, str) else "") + "".join(pieces))
        for name, pieces in self.json.items():
            text = "".join(pieces)
            if text.strip():
                _put(out, name, _json_value(text, provider))
        for name, items in self.pushed.items():
            before = _lookup(self.base, name)
            _put(out, name, [*(before if isinstance(before, list) else ()), *items])
        return out


def _lookup(data: Mapping[str, Any], name: FieldPath) -> Any:
    value: Any = data
    for step in name:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _put(out: dict[str, Any], name: FieldPath, value: Any) -> None:
    """Set a dotted field, copying each mapping on the way (the base stays as it was)."""
    node = out
    for step in name[:-1]:
        inner = node.get(step)
        node[step] = dict(inner) if isinstance(inner, Mapping) else {}
        node = node[step]
    node[name[-1]] = value


def _json_value(text: str, provider: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EngineError("malformed_response", f"a replayed block's JSON is not valid "
                          f"({exc}): {excerpt(text, 80)!r}", provider=provider) from None


class Accumulator:
    """The state of one answer. ``emit=False`` builds the response without events."""

    def __init__(self, manifest: Manifest, model: str, *, emit: bool = True) -> None:
        self._manifest = manifest
        self._provider = manifest.id
        self._model = model
        self._emit = emit
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[str, _Call] = {}
        self._order: list[_Call] = []
        self._last: _Call | None = None
        self._usage: dict[str, Any] = {}
        self._finish: Any = None
        self._raw: list[Any] = []
        self._replay: list[Any] = []  # items, and _Block entries built at the end
        self._blocks: dict[str, _Block] = {}
        self._last_block: _Block | None = None
        self.events: list[StreamEvent] = []
        self.done = False

    # -- input

    def apply(self, delta: Delta) -> None:
        """Fold one delta in; ``EngineError`` when its data cannot be normalized."""
        if delta.raw is not _UNSET_RAW:
            self._raw.append(delta.raw)
        thinking = text_of(delta.thinking)
        if thinking:
            self._thinking.append(thinking)
            self._event(ThinkingDelta(thinking))
        content = text_of(delta.content)
        if content:
            self._content.append(content)
            self._event(ContentDelta(content))
        for part in delta.calls:
            self._call_part(part)
        if delta.call_end is not None:
            call = self._calls.get(delta.call_end)
            if call is not None and call.open:
                self._end_call(call)
        if delta.finish is not None:
            self._finish = delta.finish
        if delta.usage:
            self._usage.update(delta.usage)
        if delta.replay is not None:
            self._keep(delta.replay)
        if delta.end:
            self.finish()

    def finish(self) -> None:
        """The answer is complete: end open calls, report usage and the finish reason."""
        if self.done:
            return
        for call in self._order:
            if call.open:
                self._end_call(call)
        self.done = True
        if self._emit:
            response = self.response
            if self._usage:
                self._event(UsageUpdate(response.usage))
            self._event(Finished(response.finish_reason))

    @property
    def has_finish_reason(self) -> bool:
        return self._finish is not None

    def take_events(self) -> list[StreamEvent]:
        events, self.events = self.events, []
        return events

    # -- output

    def whole(self, raw: Any) -> ChatResponse:
        """The response of a whole answer (``raw`` is the provider's decoded body)."""
        response = self.response
        return ChatResponse(response.content, response.thinking, response.tool_calls,
                            response.finish_reason, response.usage, raw, response.model,
                            response.provider, replay=response.replay)

    @property
    def response(self) -> ChatResponse:
        """The response accumulated so far (complete once ``done``)."""
        calls = [c.result for c in self._order if c.result is not None]
        return ChatResponse(
            content="".join(self._content),
            thinking="".join(self._thinking) or None,
            tool_calls=calls,
            finish_reason=normalize_finish(self._manifest, self._finish, bool(calls)),
            usage=make_usage(self._usage),
            raw=self._raw,
            model=self._model,
            provider=self._provider,
            replay=tuple(item.build(self._provider) if isinstance(item, _Block) else item
                         for item in self._replay),
        )

    # -- replay

    def _keep(self, part: ReplayPart) -> None:
        if part.items is not None:
            self._replay.extend(part.items)
            return
        block = None
        if part.start is None:
            block = self._blocks.get(part.key) if part.key is not None else self._last_block
        if block is None:
            block = _Block(part.start)
            if part.key is not None:
                self._blocks[part.key] = block
            self._replay.append(block)
            self._last_block = block
        for name, text in part.append:
            block.texts.setdefault(name, []).append(text)
        for name, text in part.append_json:
            block.json.setdefault(name, []).append(text)
        for name, item in part.push:
            block.pushed.setdefault(name, []).append(item)

    # -- tool calls

    def _event(self, payload: Any) -> None:
        if self._emit:
            self.events.append(StreamEvent(payload))

    def _call_part(self, part: CallPart) -> None:
        found = None
        if not part.complete:
            found = self._calls.get(part.key) if part.key is not None else self._last
        if found is None or not found.open:
            if part.continues:
                return  # a fragment of a block that is not a tool call of ours
            call = self._start(part.key, part.id, part.name)
        else:
            call = found
            call.name = call.name or (str(part.name) if part.name else "")
        call.extra.update(part.extra)
        self._add_arguments(call, part.arguments)
        if part.complete:
            self._end_call(call)

    def _start(self, key: str | None, call_id: Any, name: Any) -> _Call:
        # An id is fixed when the call starts, so every event of a call carries the same one.
        call = _Call(len(self._order), str(call_id) if call_id else synthesize_id(),
                     str(name) if name else "")
        if key is not None:
            self._calls[key] = call
        self._order.append(call)
        self._last = call
        self._event(ToolCallStarted(call.index, call.id, call.name))
        return call

    def _add_arguments(self, call: _Call, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            if value:
                call.fragments.append(value)
                self._event(ToolCallDelta(call.index, value))
            return
        if isinstance(value, Mapping):
            call.args = dict(value)
            if self._emit:
                self._event(ToolCallDelta(call.index, json.dumps(call.args, ensure_ascii=False)))
            return
        raise EngineError("malformed_response", "tool-call arguments must be a string or an "
                          f"object, got {type(value).__name__}", provider=self._provider)

    def _tool_call(self, call: _Call) -> ToolCall:
        raw = None
        if call.args is not None and not call.fragments:
            args = call.args
        else:
            raw = "".join(call.fragments)
            args = parse_arguments(raw, self._provider)
        if not call.name:
            raise EngineError("malformed_response", f"tool call #{call.index} has no name",
                              provider=self._provider)
        return ToolCall(call.id, call.name, args, raw_arguments=raw, extra=dict(call.extra))

    def _end_call(self, call: _Call) -> None:
        tool_call = self._tool_call(call)
        call.open = False
        call.result = tool_call
        self._event(ToolCallEnded(call.index, tool_call))
