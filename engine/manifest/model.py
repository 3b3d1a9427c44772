"""The compiled manifest: frozen specs the interpreter runs, and nothing else.

This module is the contract between loading (``engine.manifest.source``,
``.check``, ``.compile``, ``.load``) and running (``engine.protocol``,
``engine.io``). It imports no third-party package: the compiled expressions it
holds (:class:`~engine.manifest.paths.Path`, :class:`~engine.manifest.patterns.Pattern`,
:class:`~engine.manifest.templates.Node`) are named for the type checker only.
Every value is validated and compiled before one of these objects exists, so
the hot path never re-parses or re-checks anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..retry import RetryPolicy

_MODELS_CACHED = 256  # per manifest: model ids are few, but callers may pass any

if TYPE_CHECKING:
    from .paths import Path
    from .patterns import Pattern
    from .templates import Node

__all__ = [
    "INPUT_TYPES",
    "MODEL_CAPABILITIES",
    "OPERATIONS",
    "RATE_LIMIT_FIELDS",
    "TOOL_CHOICE_MODES",
    "USAGE_FIELDS",
    "AuthSpec",
    "ChatSpec",
    "CountTokensSpec",
    "EmbedSpec",
    "Endpoint",
    "ErrorRule",
    "ErrorSpec",
    "EventRule",
    "HeaderFacts",
    "ListModelsSpec",
    "Manifest",
    "Matcher",
    "ResponseSpec",
    "RetryHint",
    "SettingSpec",
    "StreamSpec",
    "ToolCallRule",
    "Variant",
]

TOOL_CHOICE_MODES = frozenset({"auto", "none", "required", "tool"})
# The usage fields a manifest may extract (the fields of engine.types.Usage).
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
                "reasoning_tokens", "cache_write_tokens")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """A client setting the manifest's templates read as ``settings.<name>``.

    Its value comes from ``AiClient.create(settings=...)``, else the first set
    variable of ``env``, else ``default``; a ``required`` one without a value
    refuses the client. ``pattern`` (anchored at both ends) is what a value
    must match; without one, a value is URL-safe text (see
    :mod:`engine.protocol.settings`).
    """

    name: str
    env: tuple[str, ...] = ()
    default: str | None = None
    required: bool = False
    pattern: Pattern | None = None
    description: str = ""
    example: str | None = None  # a valid value for dry runs (see samples())


@dataclass(frozen=True, slots=True)
class AuthSpec:
    scheme: str
    header: str | None = None
    prefix: str = ""
    param: str | None = None
    env: tuple[str, ...] = ()
    required: bool = True
    command: tuple[str, ...] = ()  # bearer-token: argv of the command printing a token
    lifetime: float = 3000.0  # bearer-token: seconds a token is reused
    credentials: str | None = None  # bearer-token: "application-default" instead of a command
    scopes: tuple[str, ...] = ()  # bearer-token with application-default credentials
    library: str | None = None  # the module that provides them (default(), refresh())
    extra: str | None = None  # the package extra that installs that module
    service: str | None = None  # aws-sigv4: the signing service name
    region: Node | None = None  # aws-sigv4: the region, a template over settings


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    """Where the parts of a whole (non-streamed) answer sit in its body."""

    content: Path | None
    thinking: Path | None
    tool_calls: Path | None
    finish_reason: Path | None
    usage: Mapping[str, Path]
    error: Path | None
    replay: Path | None = None  # the answer as the provider needs it back (a list)


@dataclass(frozen=True, slots=True)
class Matcher:
    """A condition on one frame's envelope; every part given must hold.

    ``events``: the frame's event name is one of these; ``data``: the frame's
    text, stripped, equals this; ``when``: a JMESPath condition over the
    decoded data (``frame()`` reaches the envelope from inside it).
    """

    events: frozenset[str] | None = None
    data: str | None = None
    when: Path | None = None


@dataclass(frozen=True, slots=True)
class ToolCallRule:
    key: Path | None
    id: Path | None
    name: Path | None
    arguments: Path | None
    each: Path | None
    complete: bool
    extra: Mapping[str, Path] = field(default_factory=dict)
    continues: bool = False  # fragments for a key no open call has are dropped


@dataclass(frozen=True, slots=True)
class ReplayRule:
    """What a frame adds to the answer kept for replay.

    ``items``: whole items (a list, or one object). Else a block under ``key``
    (without one: ``start`` begins a block, the rest go to the last one):
    ``start`` copies an object in, ``append`` adds text to fields,
    ``append_json`` adds text parsed once when the answer ends, ``push`` adds
    items to list fields. Field names are dotted (``a.b.text``); a block one
    touches before any start begins empty.
    """

    items: Path | None = None
    key: Path | None = None
    start: Path | None = None
    append: tuple[tuple[tuple[str, ...], Path], ...] = ()
    append_json: tuple[tuple[tuple[str, ...], Path], ...] = ()
    push: tuple[tuple[tuple[str, ...], Path], ...] = ()


@dataclass(frozen=True, slots=True)
class EventRule:
    """One stream rule: a matcher and the actions it takes on a matching frame."""

    match: Matcher
    content: Path | None = None
    thinking: Path | None = None
    tool_call: ToolCallRule | None = None
    tool_call_end: Path | None = None
    finish_reason: Path | None = None
    usage: Mapping[str, Path] = field(default_factory=dict)
    error: Mapping[str, Path] | None = None
    end: bool = False
    replay: ReplayRule | None = None


@dataclass(frozen=True, slots=True)
class StreamSpec:
    path: Node | None
    query: Node | None
    headers: Node | None
    framing: str
    end: tuple[Matcher, ...]
    eof_ok: bool
    ignore: tuple[Matcher, ...]
    events: tuple[EventRule, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """The request bodies for one family of models (an override, or the base)."""

    pattern: Pattern | None
    body: Node
    stream_body: Node | None
    # The Manifest capability fields these models have instead (an override's
    # capabilities merged over the top-level ones); None: the manifest's own.
    capabilities: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ChatSpec:
    method: str
    path: Node
    query: Node | None
    response: ResponseSpec
    stream: StreamSpec | None
    variants: tuple[Variant, ...]  # overrides first, the base last
    _by_model: dict[str, Variant] = field(default_factory=dict, init=False, compare=False,
                                          repr=False)

    def variant_for(self, model: str) -> Variant:
        """The first variant whose pattern matches *model* (computed once per model)."""
        got = self._by_model.get(model)
        if got is None:
            got = next((v for v in self.variants
                        if v.pattern is None or v.pattern.search(model)), self.variants[-1])
            if len(self._by_model) < _MODELS_CACHED:
                self._by_model[model] = got
        return got


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """Conditions (all must hold) and outcomes of one error rule.

    For each outcome (``kind``; ``retryable``; ``retry``, the provider's own
    instruction that overrides the policy's kinds) the first matching rule
    that gives it decides.
    """

    kind: str | None = None
    status: frozenset[int] | None = None
    codes: frozenset[str] | None = None
    types: frozenset[str] | None = None
    message: Pattern | None = None
    headers: tuple[tuple[str, Pattern], ...] = ()
    retryable: bool | None = None
    retry: bool | None = None


@dataclass(frozen=True, slots=True)
class RetryHint:
    header: str | None = None
    path: Path | None = None
    message: Pattern | None = None
    unit: str = "auto"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    message: Path | None = None
    code: Path | None = None
    type: Path | None = None
    rules: tuple[ErrorRule, ...] = ()
    retry_after: tuple[RetryHint, ...] = ()


# What a catalogue entry may say a model can do.
MODEL_CAPABILITIES = ("tools", "vision", "reasoning", "json_output")


# The rate-limit facts a manifest may read from response headers (engine.types.RateLimit).
RATE_LIMIT_FIELDS = ("requests_limit", "requests_remaining", "requests_reset",
                     "tokens_limit", "tokens_remaining", "tokens_reset")


# The operations a manifest may describe, each a top-level section of its own.
OPERATIONS = ("chat", "embed", "list_models", "count_tokens")
# What ``client.embed(input_type=...)`` may say the texts are for; a manifest maps
# each one it supports to its provider's own word (``embed.input_types``).
INPUT_TYPES = ("query", "document", "classification", "clustering", "similarity")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one request of an operation goes: method, path and query templates."""

    method: str
    path: Node
    query: Node | None


@dataclass(frozen=True, slots=True)
class EmbedSpec:
    """The ``embed`` operation: one request per ``max_inputs`` texts.

    ``vectors`` finds one vector per input (a list of numbers, or base64 of
    little-endian float32); ``index``, when given, is each vector's input
    position within the request. ``errors`` is the manifest's error spec
    with this section's overrides applied.
    """

    endpoint: Endpoint
    body: Node
    vectors: Path
    index: Path | None
    model: Path | None
    usage: Mapping[str, Path]
    errors: ErrorSpec
    max_inputs: int | None = None
    dimensions: bool = False
    input_types: Mapping[str, str] = field(default_factory=dict)
    allow_empty: bool = False


@dataclass(frozen=True, slots=True)
class ListModelsSpec:
    """The ``list_models`` operation: the provider's model list, page by page.

    ``models`` finds the list of entries in one page; ``id`` and the limits are
    read from each entry; ``capabilities`` maps a capability to a condition over
    an entry. With ``next`` a page names the cursor of the next one (``cursor``
    in the query template), while ``more`` (when given) holds.
    """

    endpoint: Endpoint
    models: Path
    id: Path
    context_window: Path | None
    max_output: Path | None
    capabilities: Mapping[str, Path]
    errors: ErrorSpec
    next: Path | None = None
    more: Path | None = None
    max_pages: int = 100


@dataclass(frozen=True, slots=True)
class CountTokensSpec:
    """The ``count_tokens`` operation: the chat request rendered to the provider's counter.

    ``variants`` are the chat variants with this section's ``body`` merged over
    each (and the result put under ``wrap`` when given).
    """

    endpoint: Endpoint
    variants: tuple[Variant, ...]
    tokens: Path
    errors: ErrorSpec

    def variant_for(self, model: str) -> Variant:
        for variant in self.variants:
            if variant.pattern is None or variant.pattern.search(model):
                return variant
        return self.variants[-1]


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """Response headers that carry facts: header names in order of preference, lower-cased."""

    request_id: tuple[str, ...] = ()
    rate_limit: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartLimit:
    """What a provider takes of one part kind: bytes at most, and which media types."""

    max_bytes: int | None = None
    media_types: frozenset[str] | None = None  # None: every type of the kind


@dataclass(frozen=True, slots=True)
class Manifest:
    """A fully compiled manifest: everything the interpreter needs, nothing raw."""

    id: str
    name: str
    source: str
    base_url: str
    headers: Node | None
    auth: AuthSpec
    chat: ChatSpec | None
    finish_reasons: Mapping[str, str]
    errors: ErrorSpec
    retry: RetryPolicy
    models: Mapping[str, Mapping[str, Any]]
    tools: bool = True
    stream: bool = True
    tool_choice_modes: frozenset[str] = TOOL_CHOICE_MODES
    # Environment variables naming a base URL, used (first set wins) when none is passed.
    base_url_env: tuple[str, ...] = ()
    response_headers: HeaderFacts = field(default_factory=HeaderFacts)
    stream_errors: bool = True
    # Declared client settings, and the base URL as a template over them (when it
    # reads settings; else None and base_url is the address).
    settings: Mapping[str, SettingSpec] = field(default_factory=dict)
    # Message parts the manifest renders: kind -> the sources it takes (url, data,
    # fetch: a URL part is downloaded and sent as data), and each kind's limits.
    part_sources: Mapping[str, frozenset[str]] = field(default_factory=dict)
    part_limits: Mapping[str, PartLimit] = field(default_factory=dict)
    # Answer formats it can ask for (json_schema, json_object), and how it emulates
    # the others ("tool": a forced tool call carries the answer; None: refused).
    response_formats: frozenset[str] = frozenset()
    response_format_fallback: str | None = None
    # Whether the body can turn parallel tool calls off.
    parallel_tool_calls: bool = False
    # Whether a developer message is sent in its own role (else as a system message).
    developer_role: bool = False
    # The chat params its templates read (params.<name>); any other given is refused.
    chat_params: frozenset[str] = frozenset()
    # Whether its templates pass a provider's own tool entries (Tool.native) through.
    native_tools: bool = False
    # Prompt caching: "marks" (the templates render cache marks), "automatic" (the
    # provider caches by itself; marks are not needed) or "none" (marks are refused).
    prompt_cache: str = "none"
    # Reasoning controls it can express, and params refused alongside reasoning.
    reasoning_controls: frozenset[str] = frozenset()
    reasoning_excludes: frozenset[str] = frozenset()
    # The tool_choice modes taken alongside reasoning (None: every mode it takes).
    reasoning_tool_choice: frozenset[str] | None = None
    base_url_template: Node | None = None
    embed: EmbedSpec | None = None
    list_models: ListModelsSpec | None = None
    count_tokens: CountTokensSpec | None = None

    _by_model: dict[str, Manifest] = field(default_factory=dict, init=False, compare=False,
                                           repr=False)

    def for_model(self, model: str) -> Manifest:
        """This manifest with the capabilities of *model*'s override, if it has its own.

        The checks before sending and the templates' view of capabilities use it;
        the result is computed once per model.
        """
        got = self._by_model.get(model)
        if got is not None:
            return got
        variant = self.chat.variant_for(model) if self.chat is not None else None
        got = self
        if variant is not None and variant.capabilities is not None:
            got = dataclasses.replace(self, **variant.capabilities)
        if len(self._by_model) < _MODELS_CACHED:
            self._by_model[model] = got
        return got

    @property
    def operations(self) -> tuple[str, ...]:
        """The operations this manifest describes, in :data:`OPERATIONS` order."""
        return tuple(op for op in OPERATIONS if getattr(self, op) is not None)

    def model_info(self, model: str) -> dict[str, Any]:
        info = self.models.get(model) or {}
        return {"context_window": info.get("context_window"), "max_output": info.get("max_output")}

    def cost_usd(self, model: str, prompt: int | None, completion: int | None,
                 cached: int | None) -> float | None:
        """What a call cost by the catalogue's prices; None when the model is not priced.

        Cached prompt tokens are charged at ``cached_input_price`` (the input
        price when the catalogue gives none); reasoning tokens are part of the
        completion tokens, as the providers bill them.
        """
        info = self.models.get(model) or {}
        inputs, outputs = info.get("input_price"), info.get("output_price")
        if inputs is None or prompt is None or completion is None:
            return None
        if outputs is None and completion:  # an embedding model has no output price
            return None
        hits = min(cached or 0, prompt)
        cached_price = info.get("cached_input_price", inputs)
        total = (prompt - hits) * inputs + hits * cached_price + completion * (outputs or 0)
        return float(total) / 1_000_000
