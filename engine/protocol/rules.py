"""The mapper: a manifest's extraction rules turn provider data into :class:`Delta` values. Pure.

Two entry points, one output type:

* :func:`map_body` reads a whole (non-streamed) answer with the manifest's
  ``chat.response`` paths and returns one complete delta;
* :class:`FrameRules` reads one stream frame: ``ignore`` matchers first, then
  ``end``, then the first matching ``events`` rule, whose actions fill a delta.

A delta is plain data (text pieces, tool-call parts, a raw finish reason, usage
values, an end flag, a provider error); it builds no response objects. That is
the accumulator's job (:mod:`engine.protocol.accumulate`), the one place where
events, :class:`~engine.types.ToolCall` and :class:`~engine.types.ChatResponse`
are made, for streams and whole answers alike.

A matcher sees the frame's envelope: its event name (``event``), its text
(``data``), and, inside ``when`` and every action path, the JMESPath function
``frame()`` returning ``{event, id, data, meta, offset}``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError, excerpt
from ..manifest.model import EventRule, Manifest, Matcher, ReplayRule, StreamSpec, ToolCallRule
from ..manifest.paths import Getter, Path, PathError, current_frame, walker
from .classify import build_error, classify
from .framing import Frame

__all__ = ["CallPart", "Delta", "FrameRules", "ReplayPart", "map_body"]

_UNSET: Any = object()


@dataclass(slots=True)
class CallPart:
    """One piece of a tool call: a fragment of a streamed call, or a whole call."""

    key: str | None = None
    id: Any = None
    name: Any = None
    arguments: Any = None  # text (a fragment of JSON), a mapping, or None
    extra: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    continues: bool = False  # only adds to a call already open under its key


@dataclass(slots=True)
class ReplayPart:
    """What one frame adds to the answer kept for replay (see ``ReplayRule``)."""

    key: str | None = None
    start: Any = None
    append: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    append_json: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    push: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)
    items: list[Any] | None = None


@dataclass(slots=True)
class Delta:
    """What one frame (or a whole answer) adds, in the order the accumulator applies it."""

    thinking: Any = None
    content: Any = None
    # Shared empty defaults: most frames carry neither (one is made per frame).
    calls: Sequence[CallPart] = ()
    call_end: str | None = None
    finish: Any = None
    usage: Mapping[str, Any] | None = None
    error: EngineError | None = None
    end: bool = False
    raw: Any = _UNSET  # the decoded data, kept on the response's raw list
    replay: ReplayPart | None = None


def _search(path: Path | None, data: Any, provider: str, what: str) -> Any:
    if path is None or data is None:
        return None
    try:
        return path.search(data)
    except PathError as exc:
        raise EngineError("malformed_response", f"{what} has an unexpected shape: {exc}",
                          provider=provider) from None


# ---------------------------------------------------------------- whole answers

def map_body(manifest: Manifest, data: Any) -> Delta:
    """The whole answer as one complete delta; ``malformed_response`` for a wrong shape."""
    if manifest.chat is None:
        raise EngineError("invalid_request", f"{manifest.id} has no chat operation",
                          provider=manifest.id, retryable=False)
    spec = manifest.chat.response
    pid = manifest.id
    if not isinstance(data, dict):
        raise EngineError("malformed_response",
                          f"expected a JSON object, got {type(data).__name__}", provider=pid)
    if spec.error is not None and _search(spec.error, data, pid, "the error"):
        raise classify(manifest, None, {}, data=data)
    raw_calls = _search(spec.tool_calls, data, pid, "the tool calls") or []
    if not isinstance(raw_calls, list):
        raise EngineError("malformed_response", "tool calls must be a list", provider=pid)
    delta = Delta(
        thinking=_search(spec.thinking, data, pid, "the thinking"),
        content=_search(spec.content, data, pid, "the content"),
        calls=[_whole_call(item, pid) for item in raw_calls],
        finish=_search(spec.finish_reason, data, pid, "the finish reason"),
        usage={name: _search(p, data, pid, name) for name, p in spec.usage.items()},
        end=True,
        raw=data,
    )
    if spec.replay is not None:
        kept = _search(spec.replay, data, pid, "the replayed answer")
        if kept is not None:
            delta.replay = ReplayPart(items=kept if isinstance(kept, list) else [kept])
    if not delta.content and not delta.calls and delta.finish is None and not delta.thinking:
        raise EngineError("malformed_response",
                          "the response has no content, tool calls or finish reason "
                          f"where the manifest expects them: {excerpt(json.dumps(data), 160)}",
                          provider=pid)
    return delta


def _whole_call(item: Any, provider: str) -> CallPart:
    if not isinstance(item, Mapping) or not item.get("name"):
        raise EngineError("malformed_response", f"tool call without a name: {item!r:.120}",
                          provider=provider)
    extra = item.get("extra")
    return CallPart(
        id=item.get("id"), name=item["name"], arguments=item.get("arguments"),
        extra={k: v for k, v in extra.items() if v is not None}
        if isinstance(extra, Mapping) else {},
        complete=True)


# ---------------------------------------------------------------- stream frames

def _stream_paths(spec: StreamSpec) -> Iterator[Path]:
    """Every compiled expression of a stream section."""
    for matcher in (*spec.ignore, *spec.end, *(rule.match for rule in spec.events)):
        if matcher.when is not None:
            yield matcher.when
    for rule in spec.events:
        call = rule.tool_call
        exprs = [rule.content, rule.thinking, rule.tool_call_end, rule.finish_reason,
                      *rule.usage.values(), *(rule.error or {}).values()]
        if call is not None:
            exprs += [call.key, call.id, call.name, call.arguments, call.each,
                           *call.extra.values()]
        replay = rule.replay
        if replay is not None:
            exprs += [replay.items, replay.key, replay.start,
                      *(p for _, p in (*replay.append, *replay.append_json, *replay.push))]
        yield from (path for path in exprs if path is not None)


def _discriminator(rules: tuple[EventRule, ...]) -> tuple[Getter, list[str | None]]:
    """The chain most rule conditions test against a string (``type == 'x' && ...``), as a
    getter, and each rule's literal for it (None: the rule does not test it)."""
    tests = [dict(rule.match.when.tests) if rule.match.when is not None else {}
             for rule in rules]
    counts = Counter(steps for found in tests for steps in found)
    if not counts or counts.most_common(1)[0][1] < 2:
        return walker(()), [None] * len(rules)
    steps = counts.most_common(1)[0][0]
    return walker(steps), [found.get(steps) for found in tests]


class FrameRules:
    """One manifest's stream rules, applied to frames. Stateless: safe to share."""

    def __init__(self, manifest: Manifest) -> None:
        spec = manifest.chat.stream if manifest.chat is not None else None
        if spec is None:
            raise EngineError("invalid_request", f"{manifest.id} has no stream section",
                              provider=manifest.id, retryable=False)
        self.manifest = manifest
        self.spec: StreamSpec = spec
        self.provider = manifest.id
        # Only a manifest that calls frame() pays for publishing each frame to it.
        self._envelope = any("frame(" in path.source for path in _stream_paths(spec))
        # A rule whose usage paths all start at one key (usage.prompt_tokens, ...) skips
        # them all at once on the many frames without that key (each would be null).
        self._usage_root: dict[int, str] = {}
        # A replay append that reads the rule's own content or thinking path takes the
        # value already read for the delta (text deltas would otherwise be read twice).
        self._append: dict[int, tuple[tuple[tuple[str, ...], Path, str | None], ...]] = {}
        self._discriminator, literals = _discriminator(spec.events)
        self._events = tuple(zip(spec.events, literals, strict=True))
        for rule in spec.events:
            roots = {path.root for path in rule.usage.values()}
            if len(roots) == 1 and (root := roots.pop()) is not None:
                self._usage_root[id(rule)] = root
            if rule.replay is not None:
                read = {p.source: name for name, p in (("thinking", rule.thinking),
                                                       ("content", rule.content))
                        if p is not None}
                self._append[id(rule)] = tuple((field, path, read.get(path.source))
                                               for field, path in rule.replay.append)

    def map(self, frame: Frame, at_eof: bool) -> Delta | None:
        """The delta for *frame*, or None when it is ignored or matches no rule."""
        try:
            if not self._envelope:
                return self._map(frame, at_eof)
            token = current_frame.set(frame)
            try:
                return self._map(frame, at_eof)
            finally:
                current_frame.reset(token)
        except PathError as exc:
            raise EngineError("malformed_response",
                              f"a stream frame has an unexpected shape: {exc}",
                              provider=self.provider) from None

    def _map(self, frame: Frame, at_eof: bool) -> Delta | None:
        data: Any = _UNSET
        for matcher in self.spec.ignore:
            data, hit = self._matches(matcher, frame, data, at_eof)
            if hit:
                return None
        for matcher in self.spec.end:
            data, hit = self._matches(matcher, frame, data, at_eof)
            if hit:
                return Delta(end=True)
        value: Any = _UNSET  # the discriminating chain's value in this frame
        for rule, literal in self._events:
            m = rule.match
            if literal is not None:
                # The rule's condition requires chain == literal: skip it on another value
                # without evaluating the condition (most rules, on most frames).
                if (m.events is not None and frame.event not in m.events) or (
                        m.data is not None and frame.data.strip() != m.data):
                    continue
                if data is _UNSET:
                    data = self._decode(frame, at_eof)
                if value is _UNSET:
                    value = self._discriminator(data)
                if value != literal:
                    continue
            data, hit = self._matches(m, frame, data, at_eof)
            if hit:
                if data is _UNSET:
                    data = self._decode(frame, at_eof)
                return self._apply(rule, data)
        return None

    def _matches(self, m: Matcher, frame: Frame, data: Any, at_eof: bool) -> tuple[Any, bool]:
        if m.events is not None and frame.event not in m.events:
            return data, False
        if m.data is not None and frame.data.strip() != m.data:
            return data, False
        if m.when is None:
            return data, True
        if data is _UNSET:
            data = self._decode(frame, at_eof)
        return data, bool(m.when.read(data))

    def _decode(self, frame: Frame, at_eof: bool) -> Any:
        text = frame.data
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            shown = excerpt(text, 60)
            if at_eof:
                raise EngineError("incomplete_stream", f"the stream ended inside a frame at "
                                  f"byte {frame.offset}: {shown!r}",
                                  provider=self.provider) from None
            raise EngineError("malformed_response", f"frame at byte {frame.offset} is not "
                              f"JSON: {shown!r}", provider=self.provider) from None

    @staticmethod
    def _get(path: Path | None, data: Any) -> Any:
        # PathError is turned into malformed_response once, in map().
        return None if path is None else path.read(data)

    def _apply(self, rule: EventRule, data: Any) -> Delta:
        if rule.error is not None:
            return Delta(error=self._error(rule.error, data))
        delta = Delta(thinking=self._get(rule.thinking, data),
                      content=self._get(rule.content, data), raw=data)
        if rule.tool_call is not None:
            delta.calls = self._tool_calls(rule.tool_call, data)
        if rule.tool_call_end is not None:
            key = self._get(rule.tool_call_end, data)
            delta.call_end = str(key) if key is not None else None
        delta.finish = self._get(rule.finish_reason, data)
        root = self._usage_root.get(id(rule))
        if rule.usage and (root is None or (type(data) is dict and root in data)):
            found = {}
            for name, path in rule.usage.items():
                value = self._get(path, data)
                if value is not None:
                    found[name] = value
            if found:
                delta.usage = found
        delta.end = rule.end
        if rule.replay is not None:
            delta.replay = self._replay(rule.replay, data, delta, self._append[id(rule)])
        return delta

    def _replay(self, rule: ReplayRule, data: Any, delta: Delta,
                append: tuple[tuple[tuple[str, ...], Path, str | None], ...]
                ) -> ReplayPart | None:
        if rule.items is not None:
            found = self._get(rule.items, data)
            if found is None:
                return None
            return ReplayPart(items=found if isinstance(found, list) else [found])
        key = self._get(rule.key, data)
        part = ReplayPart(key=str(key) if key is not None else None,
                          start=self._get(rule.start, data))
        for name, path, read in append:
            text = getattr(delta, read) if read is not None else self._get(path, data)
            if isinstance(text, str):
                part.append.append((name, text))
        for name, path in rule.append_json:
            if isinstance(text := self._get(path, data), str):
                part.append_json.append((name, text))
        for name, path in rule.push:
            if (item := self._get(path, data)) is not None:
                part.push.append((name, item))
        if part.start is None and not (part.append or part.append_json or part.push):
            return None
        return part

    def _error(self, spec: Mapping[str, Path], data: Any) -> EngineError:
        def text(name: str) -> str | None:
            value = self._get(spec.get(name), data)
            if value is None:
                return None
            return value if isinstance(value, str) else json.dumps(value)

        status = self._get(spec.get("status"), data)
        status = status if isinstance(status, int) and not isinstance(status, bool) else None
        message = text("message") or excerpt(json.dumps(data), 200)
        return build_error(self.manifest, status, {}, message, text("code"), text("type"), data)

    def _tool_calls(self, rule: ToolCallRule, data: Any) -> list[CallPart]:
        items = [data]
        if rule.each is not None:
            found = self._get(rule.each, data)
            items = found if isinstance(found, list) else []
        parts = []
        for item in items:
            part = CallPart(id=self._get(rule.id, item), name=self._get(rule.name, item),
                            arguments=self._get(rule.arguments, item), complete=rule.complete,
                            continues=rule.continues)
            if not rule.complete:
                if part.id is None and part.name is None and part.arguments is None:
                    continue  # this frame carries no part of a tool call
                key = self._get(rule.key, item)
                part.key = str(key) if key is not None else (str(part.id) if part.id else None)
            for name, path in rule.extra.items():
                value = self._get(path, item)
                if value is not None:
                    part.extra[name] = value
            parts.append(part)
        return parts
