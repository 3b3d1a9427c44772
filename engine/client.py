"""The public client: :class:`AiClient` (async) and :class:`SyncAiClient` (blocking).

Both are thin loops around one shared, I/O-free :class:`_Core` that renders
requests, interprets responses, classifies errors and decides retries; they
differ only in how they wait and read (``await`` or not). A client holds one
connection pool (its transport) and no per-request state: every call builds
its own request, decoder and accumulator, so concurrent calls never share
anything mutable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .classify import classify
from .errors import EngineError, register_secret
from .manifest import Manifest, load_manifest
from .mapping import map_response
from .request import PreparedRequest, normalize_tool_choice, prepare
from .retry import RetryPolicy
from .stream import StreamDecoder, StreamEvent
from .transport import (
    AsyncHttpClient,
    AsyncTransport,
    RawResponse,
    SyncHttpClient,
    SyncTransport,
    Timeouts,
)
from .types import ChatRequest, ChatResponse, Message, Stats, Tool

__all__ = ["AiClient", "AsyncChat", "AsyncChatStream", "Clock", "SyncAiClient", "SyncChat",
           "SyncChatStream"]

log = logging.getLogger("engine")
ERROR_BODY_LIMIT = 1024 * 1024


class Clock:
    """Time as the client sees it. Tests pass a fake one; nothing else reads the time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def split_model(model_id: str) -> tuple[str, str]:
    """``"provider/model"`` -> ``("provider", "model")``; the model may contain ``/``."""
    if not isinstance(model_id, str) or "/" not in model_id:
        raise EngineError("invalid_request",
                          f"model id must look like 'provider/model', got {model_id!r}",
                          retryable=False)
    provider, model = model_id.split("/", 1)
    if not provider or not model:
        raise EngineError("invalid_request",
                          f"model id must look like 'provider/model', got {model_id!r}",
                          retryable=False)
    return provider, model


def _resolve_key(manifest: Manifest, api_key: str | None) -> str | None:
    key = api_key
    if not key:
        key = next((os.environ[n] for n in manifest.auth.env if os.environ.get(n)), None)
    register_secret(key)
    return key


class _Core:
    """Everything a call needs except I/O. Shared by the async and sync clients."""

    def __init__(self, model_id: str, *, api_key: str | None, base_url: str | None,
                 max_retries: int | None, retry: RetryPolicy | None, clock: Clock | None) -> None:
        self.provider, self.model = split_model(model_id)
        self.manifest = load_manifest(self.provider)
        self._api_key = _resolve_key(self.manifest, api_key)
        self.base_url = base_url
        spec = self.manifest.retry
        base = retry or RetryPolicy(
            max_retries=spec.max_retries if spec.max_retries is not None else 2,
            retry_on=spec.retry_on, backoff_base=spec.backoff_base,
            backoff_max=spec.backoff_max, honor_retry_after=spec.honor_retry_after,
            max_retry_after=spec.max_retry_after)
        self.policy = base.with_overrides(max_retries=max_retries)
        self.clock = clock or Clock()

    def prepare(self, request: ChatRequest, stream: bool) -> PreparedRequest:
        return prepare(self.manifest, request, self.model, api_key=self._api_key,
                       base_url=self.base_url, stream=stream)

    def error_for(self, status: int, headers: Mapping[str, str], body: bytes) -> EngineError:
        return classify(self.manifest, status, headers, body)

    def interpret(self, raw: RawResponse) -> ChatResponse:
        if raw.status >= 400:
            raise self.error_for(raw.status, raw.headers, raw.body)
        try:
            data = json.loads(raw.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            excerpt = raw.body[:120]
            raise EngineError("malformed_response", f"HTTP {raw.status} body is not JSON: "
                              f"{excerpt!r}", status=raw.status, provider=self.provider,
                              retryable=False) from None
        return map_response(self.manifest, data, self.model)

    def next_delay(self, error: EngineError, attempt: int, policy: RetryPolicy) -> float | None:
        """Seconds to wait before retrying, or None to give up (and raise)."""
        error.attempts = attempt + 1
        if not policy.should_retry(error, attempt):
            return None
        delay = policy.delay(error, attempt)
        log.debug("retry %d/%d for %s after %s; waiting %.3fs", attempt + 1,
                  policy.max_retries, self.provider, error.kind, delay)
        return delay

    def stats(self, response: ChatResponse, started: float, attempts: int,
              ttft: float | None = None) -> Stats:
        usage = response.usage
        latency = (self.clock.monotonic() - started) * 1000.0
        log.debug("%s/%s answered in %.1f ms after %d attempt(s)", self.provider, self.model,
                  latency, attempts)
        return Stats(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            latency_ms=latency,
            ttft_ms=None if ttft is None else (ttft - started) * 1000.0,
            attempts=attempts,
            model=self.model,
            provider=self.provider,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )

    def __repr__(self) -> str:
        return f"{self.provider}/{self.model}"


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

    def _policy(self, core: _Core) -> RetryPolicy:
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
        core, transport = self._client._core, self._client._transport
        policy = self._policy(core)
        prepared = core.prepare(self.build(), stream=False)
        started = core.clock.monotonic()
        attempt = 0
        while True:
            try:
                response = core.interpret(await transport.send(prepared, core.provider))
                return response, core.stats(response, started, attempt + 1)
            except EngineError as error:
                delay = core.next_delay(error, attempt, policy)
                if delay is None:
                    raise
                await core.clock.asleep(delay)
                attempt += 1

    def stream(self) -> AsyncChatStream:
        return AsyncChatStream(self._client, self.build(), self._policy(self._client._core))


class SyncChat(_Builder):
    """A chat request for :class:`SyncAiClient`; finish with ``.execute()`` or ``.stream()``."""

    def __init__(self, client: SyncAiClient) -> None:
        super().__init__()
        self._client = client

    def execute(self) -> ChatResponse:
        return self.execute_with_stats()[0]

    def execute_with_stats(self) -> tuple[ChatResponse, Stats]:
        core, transport = self._client._core, self._client._transport
        policy = self._policy(core)
        prepared = core.prepare(self.build(), stream=False)
        started = core.clock.monotonic()
        attempt = 0
        while True:
            try:
                response = core.interpret(transport.send(prepared, core.provider))
                return response, core.stats(response, started, attempt + 1)
            except EngineError as error:
                delay = core.next_delay(error, attempt, policy)
                if delay is None:
                    raise
                core.clock.sleep(delay)
                attempt += 1

    def stream(self) -> SyncChatStream:
        return SyncChatStream(self._client, self.build(), self._policy(self._client._core))


# ---------------------------------------------------------------- streams

C = TypeVar("C")


class _StreamBase(Generic[C]):
    """State shared by the async and sync stream objects (one per request)."""

    def __init__(self, client: C, core: _Core, request: ChatRequest,
                 policy: RetryPolicy) -> None:
        self._client = client
        self._core = core
        self._prepared = core.prepare(request, stream=True)
        self._policy = policy
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
            self._ttft = self._core.clock.monotonic()
        return event

    def _done(self, decoder: StreamDecoder, attempts: int) -> None:
        self._response = decoder.response
        self._stats = self._core.stats(self._response, self._started, attempts, self._ttft)

    def _on_error(self, error: EngineError, attempt: int) -> float | None:
        """Delay before a retry, or None to raise. Never retries after an event."""
        if self._delivered:
            error.attempts = attempt + 1
            return None
        return self._core.next_delay(error, attempt, self._policy)

    def _decoder(self) -> StreamDecoder:
        return StreamDecoder(self._core.manifest, self._core.model)


class AsyncChatStream(_StreamBase["AiClient"]):
    """``async for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: AiClient, request: ChatRequest, policy: RetryPolicy) -> None:
        super().__init__(client, client._core, request, policy)
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
        core, transport = self._core, self._client._transport
        self._started = core.clock.monotonic()
        attempt = 0
        while True:
            decoder = self._decoder()
            try:
                async with transport.open(self._prepared, core.provider) as handle:
                    if handle.status >= 400:
                        body = await _read_limited(handle.chunks)
                        raise core.error_for(handle.status, handle.headers, body)
                    async for chunk in handle.chunks:
                        for event in decoder.feed(chunk):
                            yield self._seen(event)
                        if decoder.error is not None:
                            raise decoder.error
                        if decoder.done:
                            await _drain(handle.chunks, DRAIN_SECONDS)
                            break
                    for event in decoder.close():
                        yield self._seen(event)
                    if decoder.error is not None:
                        raise decoder.error
                self._done(decoder, attempt + 1)
                return
            except EngineError as error:
                if error.partial is None:
                    error.partial = decoder.response if self._delivered else None
                delay = self._on_error(error, attempt)
                if delay is None:
                    raise
                await core.clock.asleep(delay)
                attempt += 1


class SyncChatStream(_StreamBase["SyncAiClient"]):
    """``for event in stream`` yields :class:`StreamEvent`; then read ``.response``."""

    def __init__(self, client: SyncAiClient, request: ChatRequest, policy: RetryPolicy) -> None:
        super().__init__(client, client._core, request, policy)
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
        core, transport = self._core, self._client._transport
        self._started = core.clock.monotonic()
        attempt = 0
        while True:
            decoder = self._decoder()
            try:
                with transport.open(self._prepared, core.provider) as handle:
                    if handle.status >= 400:
                        body = b"".join(_iter_limited(handle.chunks))
                        raise core.error_for(handle.status, handle.headers, body)
                    for chunk in handle.chunks:
                        for event in decoder.feed(chunk):
                            yield self._seen(event)
                        if decoder.error is not None:
                            raise decoder.error
                        if decoder.done:
                            _drain_sync(handle.chunks)
                            break
                    for event in decoder.close():
                        yield self._seen(event)
                    if decoder.error is not None:
                        raise decoder.error
                self._done(decoder, attempt + 1)
                return
            except EngineError as error:
                if error.partial is None:
                    error.partial = decoder.response if self._delivered else None
                delay = self._on_error(error, attempt)
                if delay is None:
                    raise
                core.clock.sleep(delay)
                attempt += 1


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
    """Async client for one ``provider/model``. Create with ``await AiClient.create(...)``.

    Holds one connection pool; release it with ``await client.aclose()`` or
    ``async with``. Pass ``http_client=`` to share your own ``httpx.AsyncClient``
    (the client then leaves it open).
    """

    def __init__(self, core: _Core, transport: AsyncTransport) -> None:
        self._core = core
        self._transport = transport

    @classmethod
    async def create(cls, model: str, *, api_key: str | None = None,
                     base_url: str | None = None, max_retries: int | None = None,
                     timeout: float | Timeouts | None = 60.0,
                     http_client: AsyncHttpClient | None = None,
                     retry: RetryPolicy | None = None, clock: Clock | None = None) -> AiClient:
        core = _Core(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                     retry=retry, clock=clock)
        return cls(core, AsyncTransport(timeout, http_client))

    @property
    def provider(self) -> str:
        return self._core.provider

    @property
    def model(self) -> str:
        return self._core.model

    @property
    def manifest(self) -> Manifest:
        return self._core.manifest

    def chat(self) -> AsyncChat:
        return AsyncChat(self)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AiClient({self._core!r})"


class SyncAiClient:
    """The blocking twin of :class:`AiClient`: same API without ``await``.

    ``SyncAiClient.create("provider/model")``, ``client.chat().user("hi").execute()``,
    ``for event in client.chat().user("hi").stream(): ...``; release with
    ``client.close()`` or ``with``.
    """

    def __init__(self, core: _Core, transport: SyncTransport) -> None:
        self._core = core
        self._transport = transport

    @classmethod
    def create(cls, model: str, *, api_key: str | None = None, base_url: str | None = None,
               max_retries: int | None = None, timeout: float | Timeouts | None = 60.0,
               http_client: SyncHttpClient | None = None, retry: RetryPolicy | None = None,
               clock: Clock | None = None) -> SyncAiClient:
        core = _Core(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                     retry=retry, clock=clock)
        return cls(core, SyncTransport(timeout, http_client))

    @property
    def provider(self) -> str:
        return self._core.provider

    @property
    def model(self) -> str:
        return self._core.model

    @property
    def manifest(self) -> Manifest:
        return self._core.manifest

    def chat(self) -> SyncChat:
        return SyncChat(self)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SyncAiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncAiClient({self._core!r})"
