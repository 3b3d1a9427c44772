"""The public client: :class:`AiClient` (async) and :class:`SyncAiClient` (blocking).

Both are thin loops around the shared, I/O-free :class:`~engine.core.Chain`
of :class:`~engine.core.Core` objects that render requests, interpret
responses, classify errors and decide retries and fallbacks; they differ only
in how they wait and read (``await`` or not). A client holds one
connection pool (its transport) and no per-request state: every call builds
its own request, decoder and accumulator, so concurrent calls never share
anything mutable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .core import Chain, Clock, Core, PerModel, Sleep, call_plan, split_model
from .errors import EngineError
from .manifest import Manifest
from .request import PreparedRequest, normalize_tool_choice
from .retry import RetryPolicy
from .stream import StreamDecoder, StreamEvent
from .transport import (
    AsyncHttpClient,
    AsyncTransport,
    Limits,
    RawResponse,
    SyncHttpClient,
    SyncTransport,
    Timeouts,
)
from .types import ChatRequest, ChatResponse, Message, Stats, Tool

__all__ = ["AiClient", "AsyncChat", "AsyncChatStream", "Clock", "SyncAiClient", "SyncChat",
           "SyncChatStream", "split_model"]

log = logging.getLogger("engine")
ERROR_BODY_LIMIT = 1024 * 1024


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

    def _policy(self, core: Core) -> RetryPolicy:
        return core.policy.with_overrides(**self._retry) if self._retry else core.policy


class AsyncChat(_Builder):
    """A chat request for :class:`AiClient`; finish with ``await .execute()`` or ``.stream()``."""

    def __init__(self, client: AiClient) -> None:
        super().__init__()
        self._client = client

    async def execute(self) -> ChatResponse:
        response, _ = await self.execute_with_stats()
        return response

    async def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        chain, transport = self._client._chain, self._client._transport
        plan = call_plan(chain, self.build(), self._policy)
        step = next(plan)
        while True:
            outcome: RawResponse | EngineError | None = None
            if isinstance(step, Sleep):
                await chain.clock.asleep(step.seconds)
            else:
                try:
                    outcome = await transport.send(step.prepared, step.core.provider)
                except EngineError as error:
                    outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

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
        chain, transport = self._client._chain, self._client._transport
        plan = call_plan(chain, self.build(), self._policy)
        step = next(plan)
        while True:
            outcome: RawResponse | EngineError | None = None
            if isinstance(step, Sleep):
                chain.clock.sleep(step.seconds)
            else:
                try:
                    outcome = transport.send(step.prepared, step.core.provider)
                except EngineError as error:
                    outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def stream(self) -> SyncChatStream:
        return SyncChatStream(self._client, self.build(), self)


# ---------------------------------------------------------------- streams

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class _Try:
    """Stream plan step: run one attempt of *prepared* on *core*, decoding with *decoder*."""

    core: Core
    prepared: PreparedRequest
    decoder: StreamDecoder


class _StreamBase(Generic[C]):
    """State of one streamed request (shared by the async and sync stream objects).

    Walks the chain: retries and falls back only until the first event was
    delivered; after that every error is raised as it comes.
    """

    def __init__(self, client: C, chain: Chain, request: ChatRequest, builder: _Builder) -> None:
        self._client = client
        self._chain = chain
        self._request = request
        self._builder = builder
        # Render every model's request now, so a bad request fails at .stream().
        self._prepared = [core.prepare(request, stream=True) for core in chain.cores]
        self._response: ChatResponse | None = None
        self._stats: Stats | None = None
        self._started = 0.0
        self._ttft: float | None = None
        self._delivered = False

    @property
    def response(self) -> ChatResponse:
        """The accumulated response; available once the stream was read to the end."""
        if self._response is None:
            raise EngineError("invalid_request", "the stream has not finished yet",
                              retryable=False)
        return self._response

    @property
    def stats(self) -> Stats:
        if self._stats is None:
            raise EngineError("invalid_request", "the stream has not finished yet",
                              retryable=False)
        return self._stats

    def _seen(self, event: StreamEvent) -> StreamEvent:
        self._delivered = True
        if self._ttft is None and event.is_content_delta:
            self._ttft = self._chain.clock.monotonic()
        return event

    def _done(self, core: Core, decoder: StreamDecoder, attempts: int) -> None:
        self._response = decoder.response
        self._stats = core.stats(self._response, self._started, attempts, self._ttft)

    def _plan(self) -> Iterator[tuple[int, Core, PreparedRequest, RetryPolicy]]:
        for index, core in enumerate(self._chain.cores):
            yield index, core, self._prepared[index], self._builder._policy(core)

    def _on_error(self, error: EngineError, decoder: StreamDecoder, index: int, core: Core,
                  policy: RetryPolicy, attempt: int, attempts: int) -> tuple[str, float]:
        """(``"retry"`` and the delay) or ``"next"`` (fall back) or ``"raise"``."""
        if error.partial is None and self._delivered:
            error.partial = decoder.response
        error.attempts = attempts + attempt + 1
        if self._delivered:
            return "raise", 0.0
        delay = core.next_delay(error, attempt, policy)
        if delay is not None:
            return "retry", delay
        if self._chain.falls_back(error, index, policy, attempts + attempt + 1):
            return "next", 0.0
        return "raise", 0.0

    def _steps(self) -> Generator[_Try | Sleep, EngineError | None, None]:
        """Retries and fallbacks of one stream, as a sans-I/O plan.

        Yields an attempt to run or a delay to wait; is resumed with the
        attempt's error (None when it completed) and raises what must reach
        the user. Shared by the async and sync streams.
        """
        self._started = self._chain.clock.monotonic()
        attempts = 0
        for index, core, prepared, policy in self._plan():
            attempt = 0
            while True:
                decoder = self._decoder(core)
                error = yield _Try(core, prepared, decoder)
                if error is None:
                    self._done(core, decoder, attempts + attempt + 1)
                    return
                action, delay = self._on_error(error, decoder, index, core, policy, attempt,
                                               attempts)
                if action == "raise":
                    raise error
                if action == "next":
                    attempts += attempt + 1
                    break
                yield Sleep(delay)
                attempt += 1

    def _decoder(self, core: Core) -> StreamDecoder:
        limits: Limits = self._client._transport.limits  # type: ignore[attr-defined]
        return StreamDecoder(core.manifest, core.model, max_frame_bytes=limits.max_frame_bytes)


class AsyncChatStream(_StreamBase["AiClient"]):
    """``async for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: AiClient, request: ChatRequest, builder: _Builder) -> None:
        super().__init__(client, client._chain, request, builder)
        self._gen: AsyncIterator[StreamEvent] | None = None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[StreamEvent]:
        plan = self._steps()
        step = next(plan)
        while True:
            outcome: EngineError | None = None
            if isinstance(step, Sleep):
                await self._chain.clock.asleep(step.seconds)
            else:
                try:
                    async for event in self._attempt(step.core, step.prepared, step.decoder):
                        yield self._seen(event)
                except EngineError as error:
                    outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration:
                return

    async def _attempt(self, core: Core, prepared: PreparedRequest,
                       decoder: StreamDecoder) -> AsyncIterator[StreamEvent]:
        async with self._client._transport.open(prepared, core.provider) as handle:
            if handle.status >= 400:
                body = await _read_limited(handle.chunks)
                raise core.error_for(handle.status, handle.headers, body)
            async for chunk in handle.chunks:
                for event in decoder.feed(chunk):
                    yield event
                if decoder.error is not None:
                    raise decoder.error
                if decoder.done:
                    await _drain(handle.chunks, DRAIN_SECONDS)
                    break
            for event in decoder.close():
                yield event
            if decoder.error is not None:
                raise decoder.error


class SyncChatStream(_StreamBase["SyncAiClient"]):
    """``for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: SyncAiClient, request: ChatRequest, builder: _Builder) -> None:
        super().__init__(client, client._chain, request, builder)
        self._gen: Iterator[StreamEvent] | None = None

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    def __enter__(self) -> SyncChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the connection."""
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]

    def _run(self) -> Iterator[StreamEvent]:
        plan = self._steps()
        step = next(plan)
        while True:
            outcome: EngineError | None = None
            if isinstance(step, Sleep):
                self._chain.clock.sleep(step.seconds)
            else:
                try:
                    for event in self._attempt(step.core, step.prepared, step.decoder):
                        yield self._seen(event)
                except EngineError as error:
                    outcome = error
            try:
                step = plan.send(outcome)
            except StopIteration:
                return

    def _attempt(self, core: Core, prepared: PreparedRequest,
                 decoder: StreamDecoder) -> Iterator[StreamEvent]:
        with self._client._transport.open(prepared, core.provider) as handle:
            if handle.status >= 400:
                body = b"".join(_iter_limited(handle.chunks))
                raise core.error_for(handle.status, handle.headers, body)
            for chunk in handle.chunks:
                yield from decoder.feed(chunk)
                if decoder.error is not None:
                    raise decoder.error
                if decoder.done:
                    _drain_sync(handle.chunks)
                    break
            yield from decoder.close()
            if decoder.error is not None:
                raise decoder.error


# After the end marker, read what is left (a few bytes at most from a sane
# server) so the connection goes back to the pool; past the limits, drop it.
DRAIN_LIMIT = 64 * 1024
DRAIN_SECONDS = 0.25


async def _drain(chunks: AsyncIterator[bytes], seconds: float) -> None:
    async def read() -> None:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > DRAIN_LIMIT:
                return

    try:
        await asyncio.wait_for(read(), seconds)
    except asyncio.TimeoutError:
        return


def _drain_sync(chunks: Iterator[bytes]) -> None:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > DRAIN_LIMIT:
            return


async def _read_limited(chunks: AsyncIterator[bytes]) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return bytes(body[:ERROR_BODY_LIMIT])


def _iter_limited(chunks: Iterator[bytes]) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        yield chunk
        size += len(chunk)
        if size >= ERROR_BODY_LIMIT:
            return


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
        chain = Chain(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                      retry=retry, clock=clock)
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
        return [repr(core) for core in self._chain.cores]

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
        chain = Chain(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                      retry=retry, clock=clock)
        return cls(chain, SyncTransport(timeout, http_client, limits))

    @property
    def provider(self) -> str:
        return self._chain.primary.provider

    @property
    def model(self) -> str:
        return self._chain.primary.model

    @property
    def models(self) -> list[str]:
        return [repr(core) for core in self._chain.cores]

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
