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

import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .clock import Clock
from .errors import EngineError
from .events import StreamEvent
from .io.drivers import call_async, call_sync, stream_async, stream_sync
from .io.transport import (
    AsyncHttpClient,
    AsyncTransport,
    Limits,
    SyncHttpClient,
    SyncTransport,
    Timeouts,
)
from .manifest.load import load_manifest
from .manifest.model import Manifest
from .protocol.plan import Chain, PerModel, Target, call_plan, split_model, stream_plan
from .protocol.render import normalize_tool_choice
from .retry import RetryPolicy
from .types import ChatRequest, ChatResponse, Message, Stats, Tool

__all__ = ["AiClient", "AsyncChat", "AsyncChatStream", "Clock", "SyncAiClient", "SyncChat",
           "SyncChatStream", "split_model"]

log = logging.getLogger("engine")


# ---------------------------------------------------------------- chat builder

def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EngineError("invalid_request", f"{name} must be a number, got {value!r}",
                          retryable=False)
    return value


class _Builder:
    """The fluent request builder shared by the async and sync chats."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._params: dict[str, Any] = {}
        self._tools: tuple[Tool, ...] | None = None
        self._tool_choice: Any = None
        self._extra: dict[str, Any] = {}
        self._retry: dict[str, Any] = {}

    def system(self, text: str) -> Any:
        return self.message(Message.system(text))

    def user(self, text: str) -> Any:
        return self.message(Message.user(text))

    def assistant(self, text: str | None = "", tool_calls: Sequence[Any] = ()) -> Any:
        return self.message(Message.assistant(text, tool_calls=tool_calls))

    def tool(self, tool_call_id: str, content: Any) -> Any:
        return self.message(Message.tool(tool_call_id, content))

    def message(self, message: Message | Mapping[str, Any]) -> Any:
        try:
            self._messages.append(Message.from_dict(message))
        except (TypeError, ValueError, KeyError) as exc:
            raise EngineError("invalid_request", f"bad message: {exc}", retryable=False) from None
        return self

    def messages(self, messages: Sequence[Message | Mapping[str, Any]]) -> Any:
        for message in messages:
            self.message(message)
        return self

    def temperature(self, value: float) -> Any:
        self._params["temperature"] = _number("temperature", value)
        return self

    def top_p(self, value: float) -> Any:
        self._params["top_p"] = _number("top_p", value)
        return self

    def max_tokens(self, value: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EngineError("invalid_request", f"max_tokens must be a positive int, got "
                              f"{value!r}", retryable=False)
        self._params["max_tokens"] = value
        return self

    def seed(self, value: int) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EngineError("invalid_request", "seed must be an int", retryable=False)
        self._params["seed"] = value
        return self

    def stop(self, value: str | Sequence[str]) -> Any:
        stops = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(s, str) for s in stops):
            raise EngineError("invalid_request", "stop must be a str or a list of str",
                              retryable=False)
        self._params["stop"] = stops
        return self

    def tools(self, tools: Sequence[Tool | Mapping[str, Any]]) -> Any:
        try:
            self._tools = tuple(Tool.from_dict(t) for t in tools)
        except (TypeError, ValueError) as exc:
            raise EngineError("invalid_request", f"bad tool: {exc}", retryable=False) from None
        return self

    def tool_choice(self, choice: str | Mapping[str, Any]) -> Any:
        normalize_tool_choice(choice)  # validate now, not at send time
        self._tool_choice = choice
        return self

    def extra_body(self, fields: Mapping[str, Any]) -> Any:
        """Fields deep-merged into the provider body (``None`` removes a field)."""
        self._extra.update(fields)
        return self

    def retry(self, **overrides: Any) -> Any:
        """Per-call retry overrides: max_retries, retry_on, backoff_base, ..."""
        RetryPolicy().with_overrides(**overrides)  # validate the names now
        self._retry.update(overrides)
        return self

    def build(self) -> ChatRequest:
        """The normalized request this builder describes."""
        if not self._messages:
            raise EngineError("invalid_request", "a chat needs at least one message",
                              retryable=False)
        return ChatRequest(tuple(self._messages), dict(self._params), self._tools,
                           self._tool_choice, dict(self._extra))

    def _policy(self, target: Target) -> RetryPolicy:
        return target.policy.with_overrides(**self._retry) if self._retry else target.policy


class AsyncChat(_Builder):
    """A chat request for :class:`AiClient`; finish with ``await .execute()`` or ``.stream()``."""

    def __init__(self, client: AiClient) -> None:
        super().__init__()
        self._client = client

    async def execute(self) -> ChatResponse:
        response, _ = await self.execute_with_stats()
        return response

    async def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        chain = self._client._chain
        plan = call_plan(chain, self.build(), self._policy)
        return await call_async(plan, self._client._transport, chain.clock)  # type: ignore[no-any-return]

    def stream(self) -> AsyncChatStream:
        return AsyncChatStream(self._client, self.build(), self)


class SyncChat(_Builder):
    """A chat request for :class:`SyncAiClient`; finish with ``.execute()`` or ``.stream()``."""

    def __init__(self, client: SyncAiClient) -> None:
        super().__init__()
        self._client = client

    def execute(self) -> ChatResponse:
        return self.execute_with_stats()[0]

    def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        chain = self._client._chain
        plan = call_plan(chain, self.build(), self._policy)
        return call_sync(plan, self._client._transport, chain.clock)  # type: ignore[no-any-return]

    def stream(self) -> SyncChatStream:
        return SyncChatStream(self._client, self.build(), self)


# ---------------------------------------------------------------- streams

class _StreamBase:
    """One streamed request: its plan, and its result once the plan finished."""

    def __init__(self, chain: Chain, request: ChatRequest, builder: _Builder,
                 max_frame_bytes: int) -> None:
        # Every model's request is rendered now, so a bad request fails at .stream().
        self._plan = stream_plan(chain, request, builder._policy, max_frame_bytes)
        self._chain = chain
        self._result: tuple[ChatResponse, Stats] | None = None

    def _finished(self, value: tuple[ChatResponse, Stats]) -> None:
        self._result = value

    @property
    def response(self) -> ChatResponse:
        """The accumulated response; available once the stream was read to the end."""
        if self._result is None:
            raise EngineError("invalid_request", "the stream has not finished yet",
                              retryable=False)
        return self._result[0]

    @property
    def stats(self) -> Stats:
        if self._result is None:
            raise EngineError("invalid_request", "the stream has not finished yet",
                              retryable=False)
        return self._result[1]


class AsyncChatStream(_StreamBase):
    """``async for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: AiClient, request: ChatRequest, builder: _Builder) -> None:
        super().__init__(client._chain, request, builder,
                         client._transport.limits.max_frame_bytes)
        self._events = stream_async(self._plan, client._transport, client._chain.clock,
                                    self._finished)

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
                                   self._finished)

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

class AiClient:
    """Async client for ``provider/model`` (or a fallback chain of them).

    Create with ``await AiClient.create("provider/model")`` or
    ``await AiClient.create(["primary/model", "fallback/model"])``. Holds one
    connection pool for every call; release it with ``await client.aclose()``
    or ``async with``. Pass ``http_client=`` to share your own
    ``httpx.AsyncClient`` (the client then leaves it open).
    """

    def __init__(self, chain: Chain, transport: AsyncTransport) -> None:
        self._chain = chain
        self._transport = transport

    @classmethod
    async def create(cls, model: str | Sequence[str], *, api_key: PerModel = None,
                     base_url: PerModel = None, max_retries: int | None = None,
                     timeout: float | Timeouts | None = 60.0,
                     http_client: AsyncHttpClient | None = None,
                     retry: RetryPolicy | None = None, clock: Clock | None = None,
                     limits: Limits | None = None) -> AiClient:
        """``api_key`` and ``base_url`` may map a provider or model id to its value."""
        chain = Chain(model, load_manifest, api_key=api_key, base_url=base_url,
                      max_retries=max_retries, retry=retry, clock=clock)
        return cls(chain, AsyncTransport(timeout, http_client, limits))

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
    ``client.close()`` or ``with``.
    """

    def __init__(self, chain: Chain, transport: SyncTransport) -> None:
        self._chain = chain
        self._transport = transport

    @classmethod
    def create(cls, model: str | Sequence[str], *, api_key: PerModel = None,
               base_url: PerModel = None, max_retries: int | None = None,
               timeout: float | Timeouts | None = 60.0, http_client: SyncHttpClient | None = None,
               retry: RetryPolicy | None = None, clock: Clock | None = None,
               limits: Limits | None = None) -> SyncAiClient:
        chain = Chain(model, load_manifest, api_key=api_key, base_url=base_url,
                      max_retries=max_retries, retry=retry, clock=clock)
        return cls(chain, SyncTransport(timeout, http_client, limits))

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

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SyncAiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncAiClient({self._chain!r})"
