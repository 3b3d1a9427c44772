"""Streams: typed events and the sans-I/O decoder that produces them.

:class:`StreamDecoder` is fed the raw body bytes of one streamed response
(``feed``) and told when the body ended (``close``). It frames them with the
manifest's framer, matches each frame against the manifest's stream rules
(``ignore``, ``end``, then the first matching ``events`` rule), and returns
normalized :class:`StreamEvent` objects while accumulating the final
:class:`ChatResponse`. All state lives in the decoder, one per request.

Errors: a provider error event inside the stream, a malformed frame, or a
body that ends before the manifest's end condition is stored in
``decoder.error`` *after* the events that preceded it were returned, so the
caller delivers those first and then raises. ``incomplete_stream`` errors
carry the partial response in ``.partial``.

Tool calls are accumulated per call as a list of argument fragments and
parsed once, when the call ends (linear time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .classify import build_error
from .errors import EngineError
from .framing import Frame, make_framer
from .manifest import EventRule, Manifest, Matcher, ToolCallRule
from .mapping import make_usage, normalize_finish, parse_arguments, synthesize_id
from .paths import Path, PathError
from .types import ChatResponse, FinishReason, ToolCall, Usage

__all__ = [
    "ContentDelta",
    "Finished",
    "StreamDecoder",
    "StreamEvent",
    "ThinkingDelta",
    "ToolCallDelta",
    "ToolCallEnded",
    "ToolCallStarted",
    "UsageUpdate",
]


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEnded:
    index: int
    tool_call: ToolCall


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason


Payload = (ContentDelta | ThinkingDelta | ToolCallStarted | ToolCallDelta | ToolCallEnded
           | UsageUpdate | Finished)


def _expect(payload: Payload, cls: type[Any]) -> Any:
    if not isinstance(payload, cls):
        raise TypeError(f"this event is {type(payload).__name__}, not {cls.__name__}")
    return payload


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One normalized stream event. Test with ``is_*``, read with ``as_*``."""

    payload: Payload

    @property
    def type(self) -> str:
        return _TYPE_NAMES[type(self.payload)]

    @property
    def is_content_delta(self) -> bool:
        return isinstance(self.payload, ContentDelta)

    @property
    def as_content_delta(self) -> ContentDelta:
        return _expect(self.payload, ContentDelta)  # type: ignore[no-any-return]

    @property
    def is_thinking_delta(self) -> bool:
        return isinstance(self.payload, ThinkingDelta)

    @property
    def as_thinking_delta(self) -> ThinkingDelta:
        return _expect(self.payload, ThinkingDelta)  # type: ignore[no-any-return]

    @property
    def is_tool_call_started(self) -> bool:
        return isinstance(self.payload, ToolCallStarted)

    @property
    def as_tool_call_started(self) -> ToolCallStarted:
        return _expect(self.payload, ToolCallStarted)  # type: ignore[no-any-return]

    @property
    def is_tool_call_delta(self) -> bool:
        return isinstance(self.payload, ToolCallDelta)

    @property
    def as_tool_call_delta(self) -> ToolCallDelta:
        return _expect(self.payload, ToolCallDelta)  # type: ignore[no-any-return]

    @property
    def is_tool_call_ended(self) -> bool:
        return isinstance(self.payload, ToolCallEnded)

    @property
    def as_tool_call_ended(self) -> ToolCallEnded:
        return _expect(self.payload, ToolCallEnded)  # type: ignore[no-any-return]

    @property
    def is_usage(self) -> bool:
        return isinstance(self.payload, UsageUpdate)

    @property
    def as_usage(self) -> UsageUpdate:
        return _expect(self.payload, UsageUpdate)  # type: ignore[no-any-return]

    @property
    def is_finished(self) -> bool:
        return isinstance(self.payload, Finished)

    @property
    def as_finished(self) -> Finished:
        return _expect(self.payload, Finished)  # type: ignore[no-any-return]


_TYPE_NAMES: Mapping[type, str] = {
    ContentDelta: "content_delta",
    ThinkingDelta: "thinking_delta",
    ToolCallStarted: "tool_call_started",
    ToolCallDelta: "tool_call_delta",
    ToolCallEnded: "tool_call_ended",
    UsageUpdate: "usage",
    Finished: "finished",
}


class _Call:
    """One tool call being assembled."""

    __slots__ = ("args", "extra", "fragments", "id", "index", "name", "open")

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.fragments: list[str] = []
        self.args: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.open = True


_UNSET = object()


class StreamDecoder:
    """Bytes of one streamed response in, normalized events out. Sans-I/O."""

    def __init__(self, manifest: Manifest, model: str, *, max_frame_bytes: int | None = None
                 ) -> None:
        spec = manifest.chat.stream
        if spec is None:
            raise EngineError("invalid_request", f"{manifest.id} has no stream section",
                              provider=manifest.id, retryable=False)
        self._manifest = manifest
        self._spec = spec
        self._model = model
        kwargs = {"max_frame_bytes": max_frame_bytes} if max_frame_bytes else {}
        self._framer = make_framer(spec.framing, **kwargs)
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[str, _Call] = {}
        self._order: list[_Call] = []
        self._last: _Call | None = None
        self._usage: dict[str, Any] = {}
        self._finish: Any = None
        self._raw: list[Any] = []
        self._events: list[StreamEvent] = []
        self.done = False
        self.error: EngineError | None = None

    # -- public

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Decode more body bytes; returns the events they completed."""
        if self.done or self.error is not None:
            return []
        try:
            frames = self._framer.feed(data)
        except EngineError as exc:
            return self._fail(exc)
        return self._frames(frames, at_eof=False)

    def close(self) -> list[StreamEvent]:
        """The body ended. Checks the end condition; may set ``error``."""
        if self.done or self.error is not None:
            return []
        try:
            frames = self._framer.close()
        except EngineError as exc:
            return self._fail(self._incomplete(exc.message) if exc.kind == "incomplete_stream"
                              else exc)
        events = self._frames(frames, at_eof=True)
        if self.done or self.error is not None:
            return events
        if self._spec.eof_ok and self._finish is not None:
            try:
                self._finish_stream()
            except EngineError as exc:
                return events + self._fail(exc)
            events, self._events = events + self._events, []
            return events
        self.error = self._incomplete("the stream ended before its end marker")
        return events

    @property
    def response(self) -> ChatResponse:
        """The response accumulated so far (complete once ``done``)."""
        calls = [self._tool_call(c) for c in self._order if not c.open]
        return ChatResponse(
            content="".join(self._content),
            thinking="".join(self._thinking) or None,
            tool_calls=calls,
            finish_reason=normalize_finish(self._manifest, self._finish, bool(calls)),
            usage=make_usage(self._usage),
            raw=self._raw,
            model=self._model,
            provider=self._manifest.id,
        )

    # -- frames

    def _fail(self, exc: EngineError) -> list[StreamEvent]:
        if exc.provider is None:
            exc.provider = self._manifest.id
        self.error = exc
        events, self._events = self._events, []
        return events

    def _incomplete(self, why: str) -> EngineError:
        return EngineError("incomplete_stream", why, provider=self._manifest.id,
                           partial=self.response)

    def _frames(self, frames: list[Frame], at_eof: bool) -> list[StreamEvent]:
        try:
            for frame in frames:
                self._frame(frame, at_eof)
                if self.done:
                    break
        except EngineError as exc:
            return self._fail(exc)
        except (ValueError, TypeError, OverflowError, KeyError, AttributeError,
                RecursionError) as exc:  # odd data reaching the mapping: still the provider's
            return self._fail(EngineError("malformed_response", f"cannot map a stream frame: "
                                          f"{type(exc).__name__}: {exc}"))
        events, self._events = self._events, []
        return events

    def _frame(self, frame: Frame, at_eof: bool) -> None:
        data: Any = _UNSET
        for matcher in self._spec.ignore:
            data, hit = self._matches(matcher, frame, data, at_eof)
            if hit:
                return
        for matcher in self._spec.end:
            data, hit = self._matches(matcher, frame, data, at_eof)
            if hit:
                self._finish_stream()
                return
        for rule in self._spec.events:
            data, hit = self._matches(rule.match, frame, data, at_eof)
            if hit:
                if data is _UNSET:
                    data = self._decode(frame, at_eof)
                self._apply(rule, data, frame)
                return

    def _matches(self, m: Matcher, frame: Frame, data: Any, at_eof: bool) -> tuple[Any, bool]:
        if m.events is not None and frame.event not in m.events:
            return data, False
        if m.data is not None and frame.data.strip() != m.data:
            return data, False
        if m.when is None:
            return data, True
        if data is _UNSET:
            data = self._decode(frame, at_eof)
        return data, bool(self._search(m.when, data))

    def _decode(self, frame: Frame, at_eof: bool) -> Any:
        text = frame.data
        if not text.strip():
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            excerpt = text[:60]
            if at_eof:
                raise self._incomplete(f"the stream ended inside a frame at byte "
                                       f"{frame.offset}: {excerpt!r}") from None
            raise EngineError("malformed_response", f"frame at byte {frame.offset} is not "
                              f"JSON: {excerpt!r}", provider=self._manifest.id) from None
        self._raw.append(data)
        return data

    def _search(self, path: Path | None, data: Any) -> Any:
        if path is None or data is None:
            return None
        try:
            return path.search(data)
        except PathError as exc:
            raise EngineError("malformed_response", f"stream frame has an unexpected shape: "
                              f"{exc}", provider=self._manifest.id) from None

    # -- actions

    def _apply(self, rule: EventRule, data: Any, frame: Frame) -> None:
        if rule.error is not None:
            raise self._error(rule.error, data, frame.event if rule.error_code_from_event
                              else None)
        thinking = self._text(self._search(rule.thinking, data))
        if thinking:
            self._thinking.append(thinking)
            self._events.append(StreamEvent(ThinkingDelta(thinking)))
        content = self._text(self._search(rule.content, data))
        if content:
            self._content.append(content)
            self._events.append(StreamEvent(ContentDelta(content)))
        if rule.tool_call is not None:
            self._tool_calls(rule.tool_call, data)
        if rule.tool_call_end is not None:
            key = self._search(rule.tool_call_end, data)
            call = self._calls.get(str(key)) if key is not None else None
            if call is not None and call.open:
                self._end_call(call)
        finish = self._search(rule.finish_reason, data)
        if finish is not None:
            self._finish = finish
        for name, path in rule.usage.items():
            value = self._search(path, data)
            if value is not None:
                self._usage[name] = value
        if rule.end:
            self._finish_stream()

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "".join(v for v in value if isinstance(v, str))
        return ""

    def _error(self, spec: Mapping[str, Path], data: Any, event: str | None) -> EngineError:
        def text(name: str) -> str | None:
            value = self._search(spec.get(name), data)
            if value is None:
                return None
            return value if isinstance(value, str) else json.dumps(value)

        status = self._search(spec.get("status"), data)
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        message = text("message") or json.dumps(data)[:200]
        error = build_error(self._manifest, status, {}, message, event or text("code"),
                            text("type"), data)
        if self._raw and self._raw[-1] is data:
            self._raw.pop()  # the error is on the error; raw keeps what was answered
        error.partial = self.response
        return error

    def _tool_calls(self, rule: ToolCallRule, data: Any) -> None:
        items = [data]
        if rule.each is not None:
            found = self._search(rule.each, data)
            items = found if isinstance(found, list) else []
        for item in items:
            if rule.complete:
                self._whole_call(rule, item)
            else:
                self._fragment(rule, item)

    def _whole_call(self, rule: ToolCallRule, item: Any) -> None:
        call = self._start(None, self._search(rule.id, item), self._search(rule.name, item))
        self._keep_extra(rule, call, item)
        self._add_arguments(call, self._search(rule.arguments, item))
        self._end_call(call)

    def _keep_extra(self, rule: ToolCallRule, call: _Call, item: Any) -> None:
        for name, path in rule.extra.items():
            value = self._search(path, item)
            if value is not None:
                call.extra[name] = value

    def _fragment(self, rule: ToolCallRule, item: Any) -> None:
        call_id = self._search(rule.id, item)
        name = self._search(rule.name, item)
        arguments = self._search(rule.arguments, item)
        if call_id is None and name is None and arguments is None:
            return  # this frame carries no part of a tool call
        key = self._search(rule.key, item)
        lookup = str(key) if key is not None else (str(call_id) if call_id else None)
        call = self._calls.get(lookup) if lookup is not None else self._last
        if call is None or not call.open:
            call = self._start(lookup, call_id, name)
        else:
            call.name = call.name or (str(name) if name else "")
        self._keep_extra(rule, call, item)
        self._add_arguments(call, arguments)

    def _start(self, key: str | None, call_id: Any, name: Any) -> _Call:
        # An id is fixed when the call starts, so every event of a call carries the same one.
        call = _Call(len(self._order), str(call_id) if call_id else synthesize_id(),
                     str(name) if name else "")
        if key is not None:
            self._calls[key] = call
        self._order.append(call)
        self._last = call
        self._events.append(StreamEvent(ToolCallStarted(call.index, call.id, call.name)))
        return call

    def _add_arguments(self, call: _Call, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            if value:
                call.fragments.append(value)
                self._events.append(StreamEvent(ToolCallDelta(call.index, value)))
            return
        if isinstance(value, Mapping):
            call.args = dict(value)
            text = json.dumps(call.args, ensure_ascii=False)
            self._events.append(StreamEvent(ToolCallDelta(call.index, text)))
            return
        raise EngineError("malformed_response", "tool-call arguments must be a string or an "
                          f"object, got {type(value).__name__}", provider=self._manifest.id)

    def _tool_call(self, call: _Call) -> ToolCall:
        raw = None
        if call.args is not None and not call.fragments:
            args = call.args
        else:
            raw = "".join(call.fragments)
            args = parse_arguments(raw, self._manifest.id)
        if not call.name:
            raise EngineError("malformed_response", f"tool call #{call.index} has no name",
                              provider=self._manifest.id)
        return ToolCall(call.id, call.name, args, raw_arguments=raw, extra=dict(call.extra))

    def _end_call(self, call: _Call) -> None:
        tool_call = self._tool_call(call)
        call.open = False
        self._events.append(StreamEvent(ToolCallEnded(call.index, tool_call)))

    def _finish_stream(self) -> None:
        if self.done:
            return
        for call in self._order:
            if call.open:
                self._end_call(call)
        self.done = True
        response = self.response
        if self._usage:
            self._events.append(StreamEvent(UsageUpdate(response.usage)))
        self._events.append(StreamEvent(Finished(response.finish_reason)))
