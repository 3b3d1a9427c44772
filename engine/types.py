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
Role = Literal["system", "developer", "user", "assistant", "tool"]

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
    # An assistant turn's reasoning text, as the provider returned it.
    thinking: str | None = None
    # An assistant turn as its provider returned it (content blocks, output items:
    # opaque, signatures included), for the providers that need it back verbatim;
    # sent only to the provider named by ``replay_provider``.
    replay: tuple[Any, ...] = field(default=(), repr=False)
    replay_provider: str | None = None
    # A prompt-cache breakpoint after this message (chat.cache()).
    cache: bool = False

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", _text(content))

    @classmethod
    def developer(cls, content: str) -> Message:
        """Instructions in the developer role where the provider has one (else system)."""
        return cls("developer", _text(content))

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
        """Accept a ``Message`` or a plain dict (``role``, ``content``...).

        An assistant dict may carry ``thinking``, and ``replay`` (a list) with the
        ``replay_provider`` it came from (required with it: replay is opaque to
        every other provider).
        """
        if isinstance(data, Message):
            return data
        role = data.get("role")
        if role not in ("system", "user", "assistant", "tool", "developer"):
            raise ValueError("message role must be system, developer, user, assistant or "
                             f"tool, not {role!r}")
        calls = tuple(_tool_call(tc) for tc in data.get("tool_calls") or ())
        content = data.get("content") or ""
        if not isinstance(content, str) and role == "user":
            return cls.user(content)
        thinking = data.get("thinking")
        if thinking is not None and not isinstance(thinking, str):
            raise TypeError(f"a message's thinking must be a str, not {type(thinking).__name__}")
        replay, provider = _replay(data)
        return cls(
            role,
            _text(content),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            thinking=thinking,
            replay=replay,
            replay_provider=provider,
        )

    def to_context(self) -> dict[str, Any]:
        """The plain-data view handed to manifest templates."""
        return {
            "role": self.role,
            "content": self.content,
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            # Empty for a plain text message (its text is ``content``): a history of
            # text turns costs templates nothing more than before parts existed.
            "parts": self._part_contexts(),
            "has_media": any(p.type != "text" for p in self.parts),
            "thinking": self.thinking,
            # Emptied by the renderer for any provider but replay_provider.
            "replay": list(self.replay),
            # A cache breakpoint ends the message: its last part and its last tool
            # call carry it too, for templates that mark the last block.
            "cache": self.cache,
            "tool_calls": self._call_contexts(),
        }

    def _part_contexts(self) -> list[dict[str, Any]]:
        parts = [p.to_context() for p in self.parts]
        if self.cache and parts:
            parts[-1]["cache"] = True
        return parts

    def _call_contexts(self) -> list[dict[str, Any]]:
        calls = [tc.to_context() for tc in self.tool_calls]
        for call in calls:
            call["cache"] = False
        if self.cache and calls:
            calls[-1]["cache"] = True
        return calls


def _replay(data: Mapping[str, Any]) -> tuple[tuple[Any, ...], str | None]:
    replay = data.get("replay") or ()
    provider = data.get("replay_provider")
    if isinstance(replay, (str, bytes, Mapping)) or not isinstance(replay, Sequence):
        raise TypeError(f"a message's replay must be a list, not {type(replay).__name__}")
    if replay and not (isinstance(provider, str) and provider):
        raise ValueError("a message's replay needs the replay_provider it came from")
    return tuple(replay), provider if replay else None


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
    # A provider's own tool (web search, code execution), sent as given; None for a function.
    native: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Tool) -> Tool:
        """A function tool (``name``, ``description``, ``parameters``, ``strict``; the
        chat-completions form nesting the function under ``function`` too), or a provider's
        own tool: a mapping whose ``type`` is not ``function`` (``{"type": "search_v2",
        "name": "search"}``), or with none of a function's keys (``{"search": {}}``)."""
        if isinstance(data, Tool):
            return data
        if data.get("type") == "function" and isinstance(data.get("function"), Mapping):
            data = {**data["function"], **({"strict": data["strict"]} if "strict" in data
                                          else {})}
        elif data.get("type") not in (None, "function") or not (
                data.keys() & {"name", "description", "parameters", "strict"}):
            return cls.provider_tool(data)
        if "name" not in data:
            raise ValueError("a tool needs a 'name'")
        params = data.get("parameters") or {"type": "object", "properties": {}}
        strict = data.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ValueError(f"a tool's strict must be a bool, not {type(strict).__name__}")
        return cls(str(data["name"]), str(data.get("description") or ""), dict(params), strict)

    @classmethod
    def provider_tool(cls, data: Mapping[str, Any]) -> Tool:
        """A provider's own tool entry, passed through unchanged."""
        if not data:
            raise ValueError("a tool needs a 'name' (or is a provider's own tool entry)")
        name = data.get("name") or data.get("type") or next(iter(data))
        return cls(str(name), native=dict(data))

    def to_context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "strict": self.strict,
            "native": dict(self.native) if self.native is not None else None,
            "cache": False,
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

    # The answer as its provider gave it, for the providers whose manifest keeps it
    # (chat.response.replay; a stream's replay rules): thinking blocks with their
    # signatures, server-tool blocks, output items. Empty where not kept.
    replay: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def to_message(self) -> Message:
        """This answer as the assistant turn of the next request (for tool loops).

        Tool calls keep their provider-opaque parts, the thinking text is kept,
        and so is what the provider needs back verbatim (``replay``), which only
        this provider is sent.
        """
        return Message("assistant", self.content, tool_calls=tuple(self.tool_calls),
                       thinking=self.thinking, replay=self.replay,
                       replay_provider=self.provider if self.replay else None)


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
    # A prompt-cache breakpoint after the tool definitions.
    cache_tools: bool = False


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
