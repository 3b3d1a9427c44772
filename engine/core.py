"""The I/O-free core shared by the async and sync clients.

A :class:`Core` is one ``provider/model`` with its compiled manifest, key,
base URL and retry policy: it renders requests, interprets responses,
classifies errors, decides retries and computes stats. A :class:`Chain` is
the ordered list of cores a client falls back through: the next model is
tried when one fails with a retryable kind or a kind in the policy's
``fallback_on`` (``not_found`` by default), never after a stream event was
delivered. Neither holds per-request state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass

from .classify import classify
from .errors import EngineError, redact, register_secret
from .manifest import Manifest, load_manifest
from .mapping import map_response
from .request import PreparedRequest, prepare
from .retry import RetryPolicy
from .transport import RawResponse
from .types import ChatRequest, ChatResponse, Stats

__all__ = ["Chain", "Clock", "Core", "Send", "Sleep", "call_plan", "split_model"]

log = logging.getLogger("engine")
PerModel = str | Mapping[str, str] | None


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
    provider, _, model = model_id.partition("/") if isinstance(model_id, str) else ("", "", "")
    if not provider or not model:
        raise EngineError("invalid_request",
                          f"model id must look like 'provider/model', got {model_id!r}",
                          retryable=False)
    return provider, model


def _pick(value: PerModel, model_id: str, provider: str) -> str | None:
    """A per-client setting, or the entry for this model id or provider in a mapping."""
    if value is None or isinstance(value, str):
        return value
    return value.get(model_id) or value.get(provider)


def _resolve_key(manifest: Manifest, api_key: str | None) -> str | None:
    key = api_key or next((os.environ[n] for n in manifest.auth.env if os.environ.get(n)), None)
    register_secret(key)
    return key


class Core:
    """One ``provider/model``: everything a call needs except I/O."""

    def __init__(self, model_id: str, *, api_key: PerModel, base_url: PerModel,
                 max_retries: int | None, retry: RetryPolicy | None, clock: Clock) -> None:
        self.provider, self.model = split_model(model_id)
        self.manifest = load_manifest(self.provider)
        self._api_key = _resolve_key(self.manifest, _pick(api_key, model_id, self.provider))
        self.base_url = _pick(base_url, model_id, self.provider)
        spec = self.manifest.retry
        base = retry or RetryPolicy(
            max_retries=spec.max_retries if spec.max_retries is not None else 2,
            retry_on=spec.retry_on, backoff_base=spec.backoff_base,
            backoff_max=spec.backoff_max, honor_retry_after=spec.honor_retry_after,
            max_retry_after=spec.max_retry_after)
        self.policy = base.with_overrides(max_retries=max_retries)
        self.clock = clock

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
            excerpt = redact(raw.body.decode("utf-8", "replace"))[:120]
            raise EngineError("malformed_response", f"HTTP {raw.status} body is not JSON: "
                              f"{excerpt!r}", status=raw.status,
                              provider=self.provider, retryable=False) from None
        try:
            return map_response(self.manifest, data, self.model)
        except (ValueError, TypeError, OverflowError, KeyError, AttributeError,
                RecursionError) as exc:  # odd data reaching the mapping
            raise EngineError("malformed_response", f"cannot map the response: "
                              f"{type(exc).__name__}: {exc}", status=raw.status,
                              provider=self.provider, retryable=False) from None

    def next_delay(self, error: EngineError, attempt: int, policy: RetryPolicy) -> float | None:
        """Seconds to wait before retrying, or None to give up on this model."""
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


class Chain:
    """The models a client tries in order; the first is the primary."""

    def __init__(self, models: str | Sequence[str], *, api_key: PerModel, base_url: PerModel,
                 max_retries: int | None, retry: RetryPolicy | None,
                 clock: Clock | None) -> None:
        ids = [models] if isinstance(models, str) else list(models)
        if not ids:
            raise EngineError("invalid_request", "no model given", retryable=False)
        self.clock = clock or Clock()
        self.cores = [Core(m, api_key=api_key, base_url=base_url, max_retries=max_retries,
                           retry=retry, clock=self.clock) for m in ids]

    @property
    def primary(self) -> Core:
        return self.cores[0]

    def falls_back(self, error: EngineError, index: int, policy: RetryPolicy,
                   attempts: int) -> bool:
        """After *error* exhausted model *index*: try the next one?"""
        error.attempts = attempts
        if index + 1 >= len(self.cores):
            return False
        if not (error.retryable or error.kind in policy.fallback_on):
            return False
        log.debug("falling back from %r to %r after %s", self.cores[index],
                  self.cores[index + 1], error.kind)
        return True

    def __repr__(self) -> str:
        return ", ".join(repr(c) for c in self.cores)


@dataclass(frozen=True, slots=True)
class Send:
    """Plan step: send *prepared* for *core*; resume with the RawResponse or the EngineError."""

    core: Core
    prepared: PreparedRequest


@dataclass(frozen=True, slots=True)
class Sleep:
    """Plan step: wait *seconds* (on the chain's clock); resume with None."""

    seconds: float


Plan = Generator[Send | Sleep, "RawResponse | EngineError | None", tuple[ChatResponse, Stats]]


def call_plan(chain: Chain, request: ChatRequest,
              policy_for: Callable[[Core], RetryPolicy]) -> Plan:
    """The whole retry-and-fallback logic of one plain call, as a sans-I/O generator.

    It yields what to do (:class:`Send`, :class:`Sleep`) and is resumed with
    the outcome; the async and sync clients only perform the steps.
    """
    started = chain.clock.monotonic()
    attempts = 0
    for index, core in enumerate(chain.cores):
        policy = policy_for(core)
        prepared = core.prepare(request, stream=False)
        attempt = 0
        while True:
            outcome = yield Send(core, prepared)
            try:
                if isinstance(outcome, EngineError):
                    raise outcome
                assert outcome is not None
                response = core.interpret(outcome)
                return response, core.stats(response, started, attempts + attempt + 1)
            except EngineError as error:
                delay = core.next_delay(error, attempt, policy)
                if delay is None:
                    attempts += attempt + 1
                    if not chain.falls_back(error, index, policy, attempts):
                        raise
                    break
            yield Sleep(delay)
            attempt += 1
    raise AssertionError("unreachable: the last model raises")  # pragma: no cover
