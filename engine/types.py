"""The normalized, provider-neutral data model of a chat and of the other operations.

These are plain immutable values: what a user builds (:class:`Message`,
:class:`Tool`), what the engine returns (:class:`ChatResponse`, :class:`Usage`,
:class:`ToolCall`, :class:`Stats`) and the request the renderer consumes
(:class:`ChatRequest`); and the same for embeddings (:class:`EmbedRequest`,
:class:`EmbedResponse`, :class:`EmbedUsage`) and model listing
(:class:`ModelInfo`). Nothing here knows any provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .parts import Part

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
FINISH_REASONS: frozenset[str] = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "other"}
)
Role = Literal["system", "user", "assistant", "tool"]

__all__ = [
    "FINISH_REASONS",
    "ChatRequest",
    "ChatResponse",
    "EmbedRequest",
    "EmbedResponse",
    "EmbedUsage",
    "FinishReason",
    "Message",
    "ModelInfo",
    "RateLimit",
    "Role",
    "Stats",
    "Tool",
    "ToolCall",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for. ``arguments`` is always a dict.

    ``raw_arguments`` keeps the arguments exactly as the provider sent them
    (when it sent text), so replaying the call sends the model's own text.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = field(default=None, compare=False, repr=False)
    # Provider-opaque fields the manifest asks to keep and send back with the
    # call (e.g. a signature that must accompany the call in the next turn).
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def arguments_json(self) -> str:
        """The arguments as JSON text: the provider's own, else compact JSON."""
        if self.raw_arguments is not None and self.raw_arguments.strip():
            return self.raw_arguments
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    def to_context(self) -> dict[str, Any]:
        return {**self.to_dict(), "arguments_json": self.arguments_json,
                "extra": dict(self.extra)}


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation.

    Build them with the constructors: ``Message.system(text)``,
    ``Message.user(text)``, ``Message.assistant(text, tool_calls=[...])`` and
    ``Message.tool(tool_call_id, result)``.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    # The parts of a message that holds more than text (images, documents, audio);
    # empty for plain text. ``content`` is then the text parts joined.
    parts: tuple[Part, ...] = ()

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", _text(content))

    @classmethod
    def user(cls, content: str | Sequence[str | Part]) -> Message:
        """A user turn: text, or a list of text and :class:`Part` s."""
        if isinstance(content, str):
            return cls("user", content)
        parts = _parts(content)
        return cls("user", _joined(parts), parts=parts)

    @classmethod
    def assistant(
        cls,
        content: str | None = "",
        tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
    ) -> Message:
        calls = tuple(_tool_call(tc) for tc in tool_calls)
        return cls("assistant", _text(content or ""), tool_calls=calls)

    @classmethod
    def tool(cls, tool_call_id: str, content: Any, *, name: str | None = None) -> Message:
        """A tool's answer. Non-string results are sent as JSON text."""
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        return cls("tool", text, tool_call_id=tool_call_id, name=name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Message) -> Message:
        """Accept a ``Message`` or a plain dict (``role``, ``content``...)."""
        if isinstance(data, Message):
            return data
        role = data.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"message role must be system, user, assistant or tool, not {role!r}")
        calls = tuple(_tool_call(tc) for tc in data.get("tool_calls") or ())
        content = data.get("content") or ""
        if not isinstance(content, str) and role == "user":
            return cls.user(content)
        return cls(
            role,
            _text(content),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )

    def to_context(self) -> dict[str, Any]:
        """The plain-data view handed to manifest templates."""
        return {
            "role": self.role,
            "content": self.content,
            "tool_calls": [tc.to_context() for tc in self.tool_calls],
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            # Empty for a plain text message (its text is ``content``): a history of
            # text turns costs templates nothing more than before parts existed.
            "parts": [p.to_context() for p in self.parts],
            "has_media": any(p.type != "text" for p in self.parts),
        }


def _parts(content: Any) -> tuple[Part, ...]:
    if isinstance(content, (bytes, Mapping)) or not isinstance(content, Sequence):
        raise TypeError(f"message content must be a str or a list of str and Part, "
                        f"not {type(content).__name__}")
    out = []
    for item in content:
        if isinstance(item, str):
            out.append(Part.text(item))
        elif isinstance(item, Part):
            out.append(item)
        else:
            raise TypeError(f"a message part must be a str or a Part, not "
                            f"{type(item).__name__}")
    return tuple(out)


def _joined(parts: Sequence[Part]) -> str:
    return "\n".join(p.content or "" for p in parts if p.type == "text")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"message content must be a str, not {type(value).__name__}")
    return value


def _tool_call(value: ToolCall | Mapping[str, Any]) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    args = value.get("arguments", {})
    raw = args if isinstance(args, str) else None
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise TypeError("tool call arguments must be a dict (or a JSON object string)")
    extra = value.get("extra") or {}
    return ToolCall(id=str(value["id"]), name=str(value["name"]), arguments=args,
                    raw_arguments=raw, extra=dict(extra))


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: a name, a description and a JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    # Strict schema adherence for the arguments, where the provider has it (None: unsaid).
    strict: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Tool) -> Tool:
        if isinstance(data, Tool):
            return data
        if "name" not in data:
            raise ValueError("a tool needs a 'name'")
        params = data.get("parameters") or {"type": "object", "properties": {}}
        strict = data.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ValueError(f"a tool's strict must be a bool, not {type(strict).__name__}")
        return cls(str(data["name"]), str(data.get("description") or ""), dict(params), strict)

    def to_context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "strict": self.strict,
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts. ``total_tokens`` is computed when the provider gives none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    # Prompt tokens written to the provider's cache (cached_tokens are the reads).
    cache_write_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """The normalized answer, the same shape for every provider."""

    content: str
    thinking: str | None
    tool_calls: list[ToolCall]
    finish_reason: FinishReason
    usage: Usage
    raw: Any = field(repr=False)  # the provider's data: large, and may echo anything
    model: str = ""
    provider: str = ""
    # The response headers, lower-cased; cookies dropped and secrets redacted.
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The decoded answer when a response format was asked for (a dict or list, or an
    # instance of the pydantic model given); None without one.
    parsed: Any = field(default=None, compare=False)

    def to_message(self) -> Message:
        """This answer as the assistant turn of the next request (for tool loops).

        Tool calls keep their provider-opaque parts, so a provider that needs
        them back (signatures) gets them.
        """
        return Message.assistant(self.content, tool_calls=self.tool_calls)


@dataclass(frozen=True, slots=True)
class Stats:
    """Measurements of one call. Times come from a monotonic clock."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float
    ttft_ms: float | None = None
    attempts: int = 1
    model: str = ""
    provider: str = ""
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    # From the response headers the manifest names (``response_headers``), else None.
    request_id: str | None = None
    rate_limit: RateLimit | None = None
    # USD, from usage and the manifest's catalogue prices; None when the model is not priced.
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The provider's rate-limit state after this call, from its response headers.

    Counts are what is left (or the limit) in the current window; resets are
    seconds from the response until the window resets. None where not reported.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset: float | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A normalized request: what the user asked for, before any manifest."""

    messages: tuple[Message, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[Tool, ...] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Per-call HTTP headers, merged over the manifest's (never over the auth header).
    headers: Mapping[str, str] = field(default_factory=dict)
    # The answer's format: {type: json_schema | json_object, name, schema, strict}, or None.
    response_format: Mapping[str, Any] | None = None
    # False: at most one tool call per turn; None: the provider's default.
    parallel_tool_calls: bool | None = None
    # Reasoning controls: {effort, budget_tokens, adaptive, summary}, or None.
    reasoning: Mapping[str, Any] | None = None
    # A pydantic model class the answer is parsed into (with response_format).
    response_model: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """Texts to embed, before any manifest. ``input_type`` is one of
    :data:`~engine.manifest.model.INPUT_TYPES` (checked against the manifest)."""

    inputs: tuple[str, ...]
    dimensions: int | None = None
    input_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Texts per request, at most the manifest's max_inputs (None: max_inputs).
    batch_size: int | None = None


@dataclass(frozen=True, slots=True)
class EmbedUsage:
    """Tokens an embedding call read, summed over its requests; None where not reported.

    Embedding has no output tokens, so a provider that reports only one of the
    two counts reports both.
    """

    prompt_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class EmbedResponse:
    """One vector per input, in input order, all from the same model."""

    vectors: list[list[float]]
    usage: EmbedUsage
    model: str
    provider: str = ""
    raw: Any = field(default=None, repr=False)  # each request's decoded answer, in order

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model the provider lists, with what the manifest's catalogue adds.

    ``id`` is the provider's model id (``AiClient.create(f"{provider}/{id}")``
    reaches it). Limits and capabilities are the provider's where its listing
    gives them, else the catalogue's, else None / empty.
    """

    id: str
    context_window: int | None = None
    max_output: int | None = None
    capabilities: tuple[str, ...] = ()
    raw: Any = field(default=None, repr=False)
    provider: str = ""
    # Whether the manifest's catalogue knows this model (its prices and limits apply).
    in_catalogue: bool = False
