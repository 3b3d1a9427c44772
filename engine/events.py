"""The normalized stream events, the same for every provider. Plain immutable values.

A stream yields :class:`StreamEvent` objects; each wraps one payload
(:class:`ContentDelta`, :class:`ThinkingDelta`, :class:`ToolCallStarted`,
:class:`ToolCallDelta`, :class:`ToolCallEnded`, :class:`UsageUpdate`,
:class:`Finished`). Test the kind with ``event.is_*`` or ``event.type`` and
read it with ``event.as_*`` (which raises ``TypeError`` for the wrong kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .types import FinishReason, ToolCall, Usage

__all__ = [
    "ContentDelta",
    "Finished",
    "Payload",
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
