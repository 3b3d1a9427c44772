"""The public client: :class:`AiClient` (async) and :class:`SyncAiClient` (blocking).

Both build the same sans-I/O plan (:mod:`engine.protocol.plan`) over a
:class:`~engine.protocol.plan.Chain` of targets, which renders requests,
interprets responses, classifies errors and decides retries and fallbacks,
and hand it to a driver (:mod:`engine.io.drivers`) that only performs its
steps; they differ only in how they wait and read (``await`` or not). A client holds one
connection pool (its transport) and no per-request state: every call builds
its own request, decoder and accumulator, so concurrent calls never share
anything mutable.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import sniffio

from . import inputs
from .clock import Clock
from .errors import EngineError
from .events import StreamEvent
from .hooks import HookSet
from .inputs import choice, embed_inputs, header_map, integer
from .io.credentials import credential_for
from .io.drivers import call_async, call_sync, stream_async, stream_sync
from .io.transport import AsyncHttpClient, AsyncTransport, SyncHttpClient, SyncTransport
from .io.wire import TRANSPORTS, AsyncWire
from .limits import DEFAULT_TIMEOUTS, Limits, Timeouts
from .logsetup import configure_from_env
from .manifest.load import load_manifest
from .manifest.model import INPUT_TYPES, Manifest
from .otel import default_hook
from .parts import Part
from .protocol.operations import MAX_REQUESTS, count_tokens_plan, embed_plan, list_models_plan
from .protocol.plan import Chain, PerModel, Target, call_plan, split_model, stream_plan
from .protocol.render import normalize_tool_choice
from .protocol.structured import json_object, response_format
from .retry import RetryPolicy
from .types import (
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    ModelInfo,
    Stats,
    Tool,
)

__all__ = ["AiClient", "AsyncChat", "AsyncChatStream", "Clock", "SyncAiClient", "SyncChat",
           "SyncChatStream", "split_model"]

log = logging.getLogger("engine")


# ---------------------------------------------------------------- chat builder

_B = TypeVar("_B", bound="_Builder")
_TOOL_MODES = ("auto", "none", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


class _Builder:
    """The fluent request builder shared by the async and sync chats.

    Every method checks its argument (:mod:`engine.inputs`) and returns the
    builder itself, so a wrong value fails at the call that got it.
    """

    def __init__(self, timeouts: Timeouts) -> None:
        self._messages: list[Message] = []
        self._params: dict[str, Any] = {}
        self._tools: tuple[Tool, ...] | None = None
        self._tool_choice: Any = None
        self._extra: dict[str, Any] = {}
        self._headers: dict[str, str] = {}
        self._retry: dict[str, Any] = {}
        self._timeouts = timeouts
        self._format: dict[str, Any] | None = None
        self._reasoning: dict[str, Any] | None = None
        self._parallel: bool | None = None
        self._model: Any = None
        self._cache_tools = False

    def system(self: _B, text: str) -> _B:
        return self.message(Message.system(inputs.text("system text", text)))

    def developer(self: _B, text: str) -> _B:
        """Instructions in the developer role where the provider has one; elsewhere
        they are sent as a system message."""
        return self.message(Message.developer(inputs.text("developer text", text)))

    def user(self: _B, content: str | Sequence[str | Part]) -> _B:
        """A user turn: text, or a list of text and :class:`~engine.Part` s (images,
        documents, audio)."""
        if isinstance(content, str):
            return self.message(Message.user(content))
        if isinstance(content, (bytes, Mapping)) or not isinstance(content, Sequence):
            raise inputs.invalid(f"user text must be a str (or a list of str and Part), "
                                 f"{inputs.got(content)}")
        try:
            return self.message(Message.user(content))
        except TypeError as exc:
            raise inputs.invalid(str(exc)) from None

    def assistant(self: _B, text: str | None = "", tool_calls: Sequence[Any] = ()) -> _B:
        if text is not None:
            inputs.text("assistant text", text)
        return self.message(Message.assistant(text, tool_calls=tool_calls))

    def tool(self: _B, tool_call_id: str, content: Any) -> _B:
        return self.message(Message.tool(inputs.text("tool_call_id", tool_call_id), content))

    def message(self: _B, message: Message | Mapping[str, Any]) -> _B:
        try:
            self._messages.append(Message.from_dict(message))
        except EngineError:
            raise
        except Exception as exc:  # whatever a malformed mapping makes the constructor raise
            raise inputs.invalid(f"bad message: {type(exc).__name__}: {exc}") from None
        return self

    def messages(self: _B, messages: Sequence[Message | Mapping[str, Any]]) -> _B:
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise inputs.invalid(f"messages must be a list of messages, got "
                                 f"{type(messages).__name__}")
        for message in messages:
            self.message(message)
        return self

    def temperature(self: _B, value: float) -> _B:
        self._params["temperature"] = inputs.number("temperature", value, 0.0, 2.0)
        return self

    def top_p(self: _B, value: float) -> _B:
        self._params["top_p"] = inputs.number("top_p", value, 0.0, 1.0)
        return self

    def top_k(self: _B, value: int) -> _B:
        """Sample from the *value* most likely tokens (where the provider takes it)."""
        self._params["top_k"] = inputs.integer("top_k", value, 1, 2**31 - 1)
        return self

    def max_tokens(self: _B, value: int) -> _B:
        self._params["max_tokens"] = inputs.integer("max_tokens", value, 1, 2**31 - 1)
        return self

    def seed(self: _B, value: int) -> _B:
        self._params["seed"] = inputs.integer("seed", value, -(2**63), 2**63 - 1)
        return self

    def stop(self: _B, value: str | Sequence[str]) -> _B:
        self._params["stop"] = inputs.stop_list(value)
        return self

    def tools(self: _B, tools: Sequence[Tool | Mapping[str, Any]], *,
              cache: bool = False) -> _B:
        """The tools the model may call: functions, and a provider's own tool entries
        passed through as given (``{"type": "search_v2", ...}``).
        ``cache=True`` marks a prompt-cache breakpoint after them."""
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
            raise inputs.invalid(f"tools must be a list of tools, got {type(tools).__name__}")
        if not isinstance(cache, bool):
            raise inputs.invalid(f"cache takes a bool, {inputs.got(cache)}")
        try:
            self._tools = tuple(Tool.from_dict(t) for t in tools)
        except EngineError:
            raise
        except Exception as exc:
            raise inputs.invalid(f"bad tool: {type(exc).__name__}: {exc}") from None
        self._cache_tools = cache
        return self

    def cache(self: _B) -> _B:
        """Mark a prompt-cache breakpoint after the messages so far (the provider
        caches the prompt up to here). Refused where the provider has no caching;
        accepted and unneeded where it caches by itself."""
        if not self._messages:
            raise inputs.invalid("cache() marks the end of the messages so far; add one first")
        self._messages[-1] = dataclasses.replace(self._messages[-1], cache=True)
        return self

    def tool_choice(self: _B, choice: str | Mapping[str, Any]) -> _B:
        """``"auto"``, ``"none"``, ``"required"``, or the name of a declared tool."""
        normalize_tool_choice(choice)  # the shape now; the name against the tools at build
        self._tool_choice = choice
        return self

    def parallel_tool_calls(self: _B, allowed: bool) -> _B:
        """Whether the model may ask for several tool calls in one turn."""
        if not isinstance(allowed, bool):
            raise inputs.invalid(f"parallel_tool_calls takes a bool, {inputs.got(allowed)}")
        self._parallel = allowed
        return self

    def response_format(self: _B, schema: Any, *, name: str | None = None,
                        strict: bool = True) -> _B:
        """Ask for an answer that is JSON matching *schema* (a JSON Schema dict, or a
        pydantic model class); the decoded, validated answer is ``response.parsed``."""
        self._format, self._model = response_format(schema, name, strict)
        return self

    def json(self: _B) -> _B:
        """Ask for a JSON object answer without a schema (JSON mode)."""
        self._format, self._model = json_object(), None
        return self

    def reasoning(self: _B, effort: str | None = None, *, budget_tokens: int | None = None,
                  summary: str | None = None, adaptive: bool = False) -> _B:
        """Reasoning controls, mapped to each provider's own: an effort ("none",
        "minimal", "low", "medium", "high"), a thinking budget in tokens, the reasoning
        text on request (summary "auto", "concise" or "detailed"), or adaptive (the
        provider decides). A control the provider cannot express is refused."""
        if effort is not None:
            inputs.choice("reasoning effort", effort, REASONING_EFFORTS)
        if budget_tokens is not None:
            inputs.integer("budget_tokens", budget_tokens, 0, 2**31 - 1)
        if summary is not None:
            inputs.choice("reasoning summary", summary, ("auto", "concise", "detailed"))
        if not isinstance(adaptive, bool):
            raise inputs.invalid(f"adaptive must be a bool, {inputs.got(adaptive)}")
        if adaptive and budget_tokens is not None:
            raise inputs.invalid("reasoning takes adaptive or budget_tokens, not both")
        if effort is None and budget_tokens is None and summary is None and not adaptive:
            raise inputs.invalid("reasoning needs effort, budget_tokens, summary or adaptive")
        self._reasoning = {"effort": effort, "budget_tokens": budget_tokens,
                           "summary": summary, "adaptive": adaptive}
        return self

    def extra_body(self: _B, fields: Mapping[str, Any]) -> _B:
        """Fields deep-merged into the provider body (``None`` removes a field)."""
        self._extra.update(inputs.json_object("extra_body", fields))
        return self

    def headers(self: _B, headers: Mapping[str, str]) -> _B:
        """HTTP headers for this call, over the manifest's (e.g. a beta flag); never auth."""
        self._headers.update(inputs.header_map(headers))
        return self

    def timeout(self: _B, value: float | Timeouts | None) -> _B:
        """Timeouts for this call: seconds (every phase), a :class:`Timeouts`, or None."""
        self._timeouts = Timeouts.of(value)
        return self

    def retry(self: _B, **overrides: Any) -> _B:
        """Per-call retry overrides: max_retries, retry_on, backoff_base, ..."""
        RetryPolicy().with_overrides(**overrides)  # names and values are checked now
        self._retry.update(overrides)
        return self

    def build(self) -> ChatRequest:
        """The normalized request this builder describes."""
        if not self._messages:
            raise inputs.invalid("a chat needs at least one message")
        self._check_tool_choice()
        budget = (self._reasoning or {}).get("budget_tokens")
        limit = self._params.get("max_tokens")
        if budget is not None and limit is not None and budget >= limit:
            raise inputs.invalid(f"budget_tokens ({budget}) must be below max_tokens "
                                 f"({limit}): thinking counts toward the answer's tokens")
        return ChatRequest(tuple(self._messages), dict(self._params), self._tools,
                           self._tool_choice, dict(self._extra), dict(self._headers),
                           self._format, self._parallel, self._reasoning, self._model,
                           self._cache_tools)

    def _check_tool_choice(self) -> None:
        choice = normalize_tool_choice(self._tool_choice)
        if choice is None or choice["mode"] != "tool":
            return
        names = [tool.name for tool in self._tools or ()]
        if choice["name"] not in names:
            declared = ", ".join(map(repr, names)) or "none"
            near = difflib.get_close_matches(choice["name"], [*_TOOL_MODES, *names], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise inputs.invalid(f"tool_choice {choice['name']!r} is neither a mode "
                                 f"('auto', 'none', 'required') nor a declared tool "
                                 f"(declared: {declared}){hint}")

    def _policy(self, target: Target) -> RetryPolicy:
        return target.policy.with_overrides(**self._retry) if self._retry else target.policy


class AsyncChat(_Builder):
    """A chat request for :class:`AiClient`; finish with ``await .execute()`` or ``.stream()``."""

    def __init__(self, client: AiClient) -> None:
        super().__init__(client._transport.timeouts)
        self._client = client

    async def execute(self) -> ChatResponse:
        response, _ = await self.execute_with_stats()
        return response

    async def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        chain = self._client._chain
        if chain.stale_credentials():
            await _in_worker(chain.refresh_credentials)
        plan = call_plan(chain, self.build(), self._policy, self._timeouts)
        result: tuple[ChatResponse, Stats] = await call_async(plan, self._client._transport,
                                                              chain.clock)
        return result

    def stream(self) -> AsyncChatStream:
        return AsyncChatStream(self._client, self.build(), self)

    async def count_tokens(self) -> int:
        """The prompt tokens of this request (messages, system, tools), counted by the
        primary model's provider; refused where its manifest has no counter."""
        chain = self._client._chain
        if chain.stale_credentials():
            await _in_worker(chain.refresh_credentials)
        plan = count_tokens_plan(chain, self.build(), self._policy, self._timeouts)
        count: int = (await call_async(plan, self._client._transport, chain.clock))[0]
        return count


class SyncChat(_Builder):
    """A chat request for :class:`SyncAiClient`; finish with ``.execute()`` or ``.stream()``."""

    def __init__(self, client: SyncAiClient) -> None:
        super().__init__(client._transport.timeouts)
        self._client = client

    def execute(self) -> ChatResponse:
        return self.execute_with_stats()[0]

    def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        chain = self._client._chain
        chain.refresh_credentials()
        plan = call_plan(chain, self.build(), self._policy, self._timeouts)
        result: tuple[ChatResponse, Stats] = call_sync(plan, self._client._transport,
                                                       chain.clock)
        return result

    def stream(self) -> SyncChatStream:
        return SyncChatStream(self._client, self.build(), self)

    def count_tokens(self) -> int:
        """The prompt tokens of this request, counted by the provider (see AsyncChat)."""
        chain = self._client._chain
        chain.refresh_credentials()
        plan = count_tokens_plan(chain, self.build(), self._policy, self._timeouts)
        count: int = call_sync(plan, self._client._transport, chain.clock)[0]
        return count


# ---------------------------------------------------------------- streams

class _Result:
    """Where a stream driver leaves the plan's result.

    The driver's generator holds this, not the stream object: a stream the
    user drops without closing has no reference cycle, so it is finalized at
    once and its connection released.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: tuple[ChatResponse, Stats] | None = None

    def __call__(self, value: tuple[ChatResponse, Stats]) -> None:
        self.value = value


class _StreamBase:
    """One streamed request: its plan, and its result once the plan finished."""

    def __init__(self, chain: Chain, request: ChatRequest, builder: _Builder,
                 max_frame_bytes: int) -> None:
        # A stale token is fetched here, blocking (an async client can avoid that with
        # ``await client.refresh_credentials()`` first); every model's request is
        # rendered now, so a bad request fails at .stream().
        chain.refresh_credentials()
        self._plan = stream_plan(chain, request, builder._policy, max_frame_bytes,
                                 builder._timeouts)
        self._result = _Result()

    def _finished_value(self) -> tuple[ChatResponse, Stats]:
        if self._result.value is None:
            raise inputs.invalid("the stream has not finished yet")
        return self._result.value

    @property
    def response(self) -> ChatResponse:
        """The accumulated response; available once the stream was read to the end."""
        return self._finished_value()[0]

    @property
    def stats(self) -> Stats:
        return self._finished_value()[1]


class AsyncChatStream(_StreamBase):
    """``async for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: AiClient, request: ChatRequest, builder: _Builder) -> None:
        super().__init__(client._chain, request, builder,
                         client._transport.limits.max_frame_bytes)
        self._events = stream_async(self._plan, client._transport, client._chain.clock,
                                    self._result)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        await self._events.aclose()  # type: ignore[attr-defined]


class SyncChatStream(_StreamBase):
    """``for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: SyncAiClient, request: ChatRequest, builder: _Builder) -> None:
        super().__init__(client._chain, request, builder,
                         client._transport.limits.max_frame_bytes)
        self._events = stream_sync(self._plan, client._transport, client._chain.clock,
                                   self._result)

    def __iter__(self) -> Iterator[StreamEvent]:
        return self._events

    def __enter__(self) -> SyncChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._events.close()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- clients

def _hooks(hooks: Any) -> HookSet:
    """The user's hooks, then OpenTelemetry's when it is installed and configured."""
    found = HookSet(() if hooks is None else hooks)
    tracing = default_hook()
    return found.adding(tracing) if tracing is not None else found


def _chain(model: Any, api_key: Any, base_url: Any, max_retries: Any, retry: Any,
           clock: Any, hooks: Any, settings: Any) -> Chain:
    """The checked chain of a ``create`` call (the one place its arguments are checked)."""
    configure_from_env()  # ENGINE_LOG, read once per process
    models = inputs.model_ids(model)
    keys = inputs.per_model("api_key", api_key, inputs.api_key)
    urls = inputs.per_model("base_url", base_url, inputs.base_url)
    if max_retries is not None:
        inputs.integer("max_retries", max_retries, 0, 100)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise inputs.invalid(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if clock is not None and not isinstance(clock, Clock):
        raise inputs.invalid(f"clock must be a Clock, got {type(clock).__name__}")
    return Chain(models, load_manifest, api_key=keys, base_url=urls,
                 max_retries=max_retries, retry=retry, clock=clock, hooks=_hooks(hooks),
                 settings=inputs.settings_map(settings), credentials=credential_for)


async def _in_worker(fn: Callable[[], None]) -> None:
    """Run blocking *fn* (a credential fetch) off the event loop."""
    if sniffio.current_async_library() == "trio":  # pragma: no cover  # trio is not a dependency
        import trio
        await trio.to_thread.run_sync(fn)
        return
    import asyncio
    await asyncio.to_thread(fn)


def _async_wire(name: Any, timeouts: Timeouts, http_client: Any,
                limits: Limits | None) -> AsyncWire:
    """The async transport *name* stands for (see :data:`~engine.io.wire.TRANSPORTS`)."""
    choice("transport", name, TRANSPORTS)
    if name == "httpx":
        return AsyncTransport(timeouts, http_client, limits)
    if http_client is not None:
        raise inputs.invalid("http_client= is an httpx.AsyncClient: it cannot be used with "
                             "transport='aiohttp'")
    try:
        from .io.aiohttp import AiohttpTransport
    except ImportError as exc:
        raise inputs.invalid(f"transport='aiohttp' needs aiohttp ({exc}): "
                             f"pip install 'engine[aiohttp]'") from None
    return AiohttpTransport(timeouts, limits)


def _policy(target: Target) -> RetryPolicy:
    return target.policy


def _embed_request(inputs: Any, dimensions: Any, input_type: Any, headers: Any,
                   batch_size: Any) -> EmbedRequest:
    texts = embed_inputs(inputs)
    if dimensions is not None:
        integer("dimensions", dimensions, 1, 65536)
    if input_type is not None:
        choice("input_type", input_type, INPUT_TYPES)
    if batch_size is not None:
        integer("batch_size", batch_size, 1)
    return EmbedRequest(texts, dimensions, input_type,
                        header_map(headers) if headers is not None else {}, batch_size)


def _max_requests(value: Any) -> int:
    return integer("max_requests", value, 1)


def _limits(limits: Any) -> Limits | None:
    if limits is not None and not isinstance(limits, Limits):
        raise inputs.invalid(f"limits must be a Limits, got {type(limits).__name__}")
    return limits


class AiClient:
    """Async client for ``provider/model`` (or a fallback chain of them).

    Create with ``await AiClient.create("provider/model")`` or
    ``await AiClient.create(["primary/model", "fallback/model"])``. Holds one
    connection pool for every call; release it with ``await client.aclose()``
    or ``async with``. Pass ``http_client=`` to share your own
    ``httpx.AsyncClient`` (the client then leaves it open). A client may be
    used from one event loop after another (``asyncio.run`` twice): its own
    pool is renewed for the new loop.
    """

    def __init__(self, chain: Chain, transport: AsyncWire) -> None:
        self._chain = chain
        self._transport = transport

    @classmethod
    async def create(cls, model: str | Sequence[str], *, api_key: PerModel = None,
                     base_url: PerModel = None, max_retries: int | None = None,
                     timeout: float | Timeouts | None = DEFAULT_TIMEOUTS,
                     http_client: AsyncHttpClient | None = None,
                     retry: RetryPolicy | None = None, clock: Clock | None = None,
                     limits: Limits | None = None,
                     hooks: Sequence[Any] | None = None,
                     settings: Mapping[str, str] | None = None,
                     transport: str = "httpx") -> AiClient:
        """``api_key`` and ``base_url`` may map a provider or model id to its value.

        ``timeout``: seconds for every phase, a :class:`Timeouts`, or None for
        no limit; the default waits 5 s to connect and 600 s for data.
        ``hooks``: objects with ``on_request`` / ``on_response`` / ``on_error``
        (:mod:`engine.hooks`), called for every attempt.
        ``settings``: values for the settings the manifest declares (a region,
        a resource, an API version), by name; each falls back to its
        environment variable and default, and a missing required one is
        refused here.
        ``transport``: ``"httpx"`` (the default) or ``"aiohttp"`` (the extra
        ``engine[aiohttp]``; no ``http_client=`` then), the HTTP stack under
        every call.
        """
        chain = _chain(model, api_key, base_url, max_retries, retry, clock, hooks, settings)
        return cls(chain, _async_wire(transport, Timeouts.of(timeout), http_client,
                                      _limits(limits)))

    @property
    def provider(self) -> str:
        return self._chain.primary.provider

    @property
    def model(self) -> str:
        return self._chain.primary.model

    @property
    def models(self) -> list[str]:
        """Every ``provider/model`` of the chain, in order."""
        return [repr(target) for target in self._chain.targets]

    @property
    def manifest(self) -> Manifest:
        return self._chain.primary.manifest

    def chat(self) -> AsyncChat:
        return AsyncChat(self)

    async def embed(self, inputs: str | Sequence[str], *, dimensions: int | None = None,
                    input_type: str | None = None, headers: Mapping[str, str] | None = None,
                    batch_size: int | None = None,
                    max_requests: int = MAX_REQUESTS) -> EmbedResponse:
        """One vector per input, in input order (see :meth:`embed_with_stats`)."""
        response, _ = await self.embed_with_stats(inputs, dimensions=dimensions,
                                                  input_type=input_type, headers=headers,
                                                  batch_size=batch_size,
                                                  max_requests=max_requests)
        return response

    async def embed_with_stats(self, inputs: str | Sequence[str], *,
                               dimensions: int | None = None, input_type: str | None = None,
                               headers: Mapping[str, str] | None = None,
                               batch_size: int | None = None,
                               max_requests: int = MAX_REQUESTS
                               ) -> tuple[EmbedResponse, Stats]:
        """Embed *inputs* (one text or a list), split into requests of the manifest's
        ``max_inputs``; ``dimensions`` and ``input_type`` (query, document,
        classification, clustering, similarity) are refused where the manifest
        cannot send them. ``batch_size`` sends fewer texts per request (a provider's
        per-request token limit); ``max_requests`` bounds how many requests one call
        makes. The first request may fall back along the chain; the others go to the
        model that answered it (vectors of two models are never mixed)."""
        chain = self._chain
        if chain.stale_credentials():
            await _in_worker(chain.refresh_credentials)
        request = _embed_request(inputs, dimensions, input_type, headers, batch_size)
        plan = embed_plan(chain, request, _policy, self._transport.timeouts,
                          _max_requests(max_requests))
        result: tuple[EmbedResponse, Stats] = await call_async(plan, self._transport,
                                                               chain.clock)
        return result

    async def list_models(self) -> list[ModelInfo]:
        """The models the primary model's provider lists for this key (every page),
        each with the manifest catalogue's limits and capabilities where the listing
        gives none."""
        chain = self._chain
        if chain.stale_credentials():
            await _in_worker(chain.refresh_credentials)
        plan = list_models_plan(chain, _policy, self._transport.timeouts)
        models: list[ModelInfo] = (await call_async(plan, self._transport, chain.clock))[0]
        return models

    async def refresh_credentials(self) -> None:
        """Fetch run-time credentials now (a token command, signing credentials) in a
        worker thread, so the next call or stream does not wait for them."""
        await _in_worker(self._chain.refresh_credentials)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AiClient({self._chain!r})"


class SyncAiClient:
    """The blocking twin of :class:`AiClient`: same API without ``await``.

    ``SyncAiClient.create("provider/model")``, ``client.chat().user("hi").execute()``,
    ``for event in client.chat().user("hi").stream(): ...``; release with
    ``client.close()`` or ``with``. One client may be shared by threads.
    """

    def __init__(self, chain: Chain, transport: SyncTransport) -> None:
        self._chain = chain
        self._transport = transport

    @classmethod
    def create(cls, model: str | Sequence[str], *, api_key: PerModel = None,
               base_url: PerModel = None, max_retries: int | None = None,
               timeout: float | Timeouts | None = DEFAULT_TIMEOUTS,
               http_client: SyncHttpClient | None = None,
               retry: RetryPolicy | None = None, clock: Clock | None = None,
               limits: Limits | None = None,
               hooks: Sequence[Any] | None = None,
               settings: Mapping[str, str] | None = None) -> SyncAiClient:
        chain = _chain(model, api_key, base_url, max_retries, retry, clock, hooks, settings)
        return cls(chain, SyncTransport(Timeouts.of(timeout), http_client, _limits(limits)))

    @property
    def provider(self) -> str:
        return self._chain.primary.provider

    @property
    def model(self) -> str:
        return self._chain.primary.model

    @property
    def models(self) -> list[str]:
        return [repr(target) for target in self._chain.targets]

    @property
    def manifest(self) -> Manifest:
        return self._chain.primary.manifest

    def chat(self) -> SyncChat:
        return SyncChat(self)

    def embed(self, inputs: str | Sequence[str], *, dimensions: int | None = None,
              input_type: str | None = None, headers: Mapping[str, str] | None = None,
              batch_size: int | None = None,
              max_requests: int = MAX_REQUESTS) -> EmbedResponse:
        """One vector per input, in input order (see :meth:`AiClient.embed_with_stats`)."""
        return self.embed_with_stats(inputs, dimensions=dimensions, input_type=input_type,
                                     headers=headers, batch_size=batch_size,
                                     max_requests=max_requests)[0]

    def embed_with_stats(self, inputs: str | Sequence[str], *, dimensions: int | None = None,
                         input_type: str | None = None,
                         headers: Mapping[str, str] | None = None,
                         batch_size: int | None = None,
                         max_requests: int = MAX_REQUESTS) -> tuple[EmbedResponse, Stats]:
        """The blocking twin of :meth:`AiClient.embed_with_stats`."""
        chain = self._chain
        chain.refresh_credentials()
        request = _embed_request(inputs, dimensions, input_type, headers, batch_size)
        plan = embed_plan(chain, request, _policy, self._transport.timeouts,
                          _max_requests(max_requests))
        result: tuple[EmbedResponse, Stats] = call_sync(plan, self._transport, chain.clock)
        return result

    def list_models(self) -> list[ModelInfo]:
        """The blocking twin of :meth:`AiClient.list_models`."""
        chain = self._chain
        chain.refresh_credentials()
        plan = list_models_plan(chain, _policy, self._transport.timeouts)
        models: list[ModelInfo] = call_sync(plan, self._transport, chain.clock)[0]
        return models

    def refresh_credentials(self) -> None:
        """Fetch run-time credentials now (a token command, signing credentials)."""
        self._chain.refresh_credentials()

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SyncAiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncAiClient({self._chain!r})"
