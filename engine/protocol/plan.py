"""The sans-I/O plan of one call or one stream: attempts, retries, fallbacks, the drain.

A plan is a generator. It yields *steps* (what to do) and is resumed with
their outcomes; it never waits, reads or writes itself. The async and sync
drivers (:mod:`engine.io.drivers`) only perform the steps, so both run the
same decisions:

=====================  ============================================  ==========================
step                   the driver                                    resumes the plan with
=====================  ============================================  ==========================
:class:`Send`          sends a plain request, reads the whole body   :class:`RawResponse` or an
                                                                     :class:`EngineError`
:class:`Open`          sends a stream request, reads the headers     :class:`Head` or an error
:data:`READ`           reads the next body chunk                     bytes (``b""``: the end)
                                                                     or an error
:class:`ReadAll`       reads the (error) body up to a limit          bytes or an error
:class:`Emit`          hands the events to the user, in order        None
:class:`Drain`         reads what is left, bounded in bytes and      None (never an error)
                       time, so the connection can be reused
:class:`Sleep`         waits on the clock                            None
:class:`Fetch`         downloads a media URL (no credentials), the   :class:`RawResponse` or an
                       body up to a limit                            :class:`EngineError`
=====================  ============================================  ==========================

The response an :class:`Open` step opened lives until the next ``Open``,
``Send`` or ``Sleep`` step, or the end of the plan, when the driver closes it.

Rules, in one place: a model is retried while its retry policy says so
(:meth:`~engine.retry.RetryPolicy.should_retry`), then the chain falls back to
the next model when the error is retryable or its kind is in ``fallback_on``;
a stream is never retried or re-routed once an event was delivered (the error
then carries the answer so far in ``.partial``); once a stream's end marker
arrived the answer stands, whatever the rest of the body does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .. import inputs
from ..clock import Clock
from ..errors import EngineError, excerpt, redact, register_secret
from ..events import StreamEvent
from ..hooks import CallInfo, HookSet
from ..limits import Timeouts
from ..manifest.model import ErrorSpec, Manifest
from ..parts import Part
from ..retry import RetryPolicy
from ..types import ChatRequest, ChatResponse, EmbedRequest, Stats, Usage
from . import media
from .accumulate import map_whole
from .auth import Credential
from .classify import carries_error, classify
from .decode import END, NEED_DATA, StreamDecoder
from .metadata import public_headers, rate_limit, request_id
from .render import (
    PreparedRequest,
    check_capabilities,
    prepare,
    prepare_count_tokens,
    prepare_embed,
    prepare_list_models,
)
from .rules import FrameRules
from .settings import check_names as check_setting_names
from .settings import render_base_url
from .settings import resolve as resolve_settings
from .structured import AnswerTool, answer_tool, unwrapped
from .structured import parse as parse_answer

__all__ = [
    "DRAIN_LIMIT",
    "DRAIN_SECONDS",
    "ERROR_BODY_LIMIT",
    "READ",
    "Call",
    "Chain",
    "Drain",
    "Emit",
    "Fetch",
    "Fetched",
    "Finish",
    "Head",
    "Open",
    "RawResponse",
    "Read",
    "ReadAll",
    "Send",
    "Sleep",
    "Target",
    "call_plan",
    "chat_call",
    "downloading",
    "split_model",
    "stream_plan",
    "walk",
]

log = logging.getLogger("engine")
PerModel = str | Mapping[str, str] | None
# Makes a target's run-time credential (engine.io.credentials.credential_for), or None.
CredentialFactory = Callable[[Manifest, "str | None", Mapping[str, "str | None"]],
                             "Credential | None"]

# An error body is read up to this size; the rest is never needed to classify it.
ERROR_BODY_LIMIT = 1024 * 1024
# After the end marker, what is left (a few bytes from a sane server) is read so
# the connection goes back to the pool; past these limits it is dropped instead.
DRAIN_LIMIT = 64 * 1024
DRAIN_SECONDS = 0.25


# ---------------------------------------------------------------- wire values

@dataclass(frozen=True, slots=True)
class RawResponse:
    """A whole response: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Head:
    """The status and lower-cased headers of an opened response."""

    status: int
    headers: dict[str, str]


# ---------------------------------------------------------------- steps

@dataclass(frozen=True, slots=True)
class Send:
    target: Target
    prepared: PreparedRequest
    timeouts: Timeouts | None = None  # None: the transport's own


@dataclass(frozen=True, slots=True)
class Open:
    target: Target
    prepared: PreparedRequest
    timeouts: Timeouts | None = None


@dataclass(frozen=True, slots=True)
class Read:
    pass


READ: Final = Read()


@dataclass(frozen=True, slots=True)
class ReadAll:
    limit: int


@dataclass(frozen=True, slots=True)
class Emit:
    events: list[StreamEvent]


@dataclass(frozen=True, slots=True)
class Drain:
    max_bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Fetch:
    """Download one media URL: the whole body up to *limit* bytes (never a provider call)."""

    prepared: PreparedRequest
    limit: int
    timeouts: Timeouts | None = None


Step = Send | Open | Read | ReadAll | Emit | Drain | Sleep | Fetch
Outcome = RawResponse | Head | bytes | EngineError | None
Plan = Generator[Step, Outcome, tuple[Any, Stats]]
Fetched = Mapping[str, Part]  # downloaded URL parts, by URL


# ---------------------------------------------------------------- targets

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


def _env_base_url(manifest: Manifest) -> str | None:
    """The base URL from the first set variable the manifest names (``base_url_env``)."""
    for name in manifest.base_url_env:
        value = os.environ.get(name)
        if value:
            return inputs.base_url(value, f"${name}")
    return None


class Target:
    """One ``provider/model`` with its manifest, key and policy: everything but I/O."""

    def __init__(self, model_id: str, manifest: Manifest, *, api_key: PerModel,
                 base_url: PerModel, max_retries: int | None, retry: RetryPolicy | None,
                 clock: Clock, settings: Mapping[str, str] | None = None,
                 credentials: CredentialFactory | None = None) -> None:
        self.provider, self.model = split_model(model_id)
        self.manifest = manifest
        self.settings = resolve_settings(manifest, settings or {})
        key = _pick(api_key, model_id, self.provider)
        where = "api_key"
        if key is None:
            name = next((n for n in manifest.auth.env if os.environ.get(n)), None)
            key, where = (os.environ[name], f"${name}") if name else (None, "")
        register_secret(key)  # before the check: a refused key must not reach any text
        self._api_key = inputs.api_key(key, where)
        self.base_url = (_pick(base_url, model_id, self.provider) or _env_base_url(manifest)
                         or render_base_url(manifest, self.settings))
        # None: the manifest's own address (base_url_template is None)
        self.credential = (credentials(manifest, self._api_key, self.settings)
                           if credentials is not None else None)
        self.policy = (retry or manifest.retry).with_overrides(max_retries=max_retries)
        self.clock = clock
        self._rules: FrameRules | None = None

    def inlined(self, request: ChatRequest, fetched: Fetched | None) -> ChatRequest:
        """*request* with the URL parts this model takes as bytes replaced by *fetched*."""
        return media.inline(request, fetched or {}, self.manifest.for_model(self.model))

    def prepare(self, request: ChatRequest, stream: bool) -> PreparedRequest:
        prepared = prepare(self.manifest, request, self.model, api_key=self._key(),
                           base_url=self.base_url, stream=stream, settings=self.settings)
        return self._signed(prepared)

    def prepare_embed(self, request: EmbedRequest, inputs: Sequence[str]) -> PreparedRequest:
        return self._signed(prepare_embed(self.manifest, request, inputs, self.model,
                                          api_key=self._key(), base_url=self.base_url,
                                          settings=self.settings))

    def prepare_list_models(self, cursor: str | None) -> PreparedRequest:
        return self._signed(prepare_list_models(self.manifest, self.model, cursor,
                                                api_key=self._key(), base_url=self.base_url,
                                                settings=self.settings))

    def prepare_count_tokens(self, request: ChatRequest) -> PreparedRequest:
        return self._signed(prepare_count_tokens(self.manifest, request, self.model,
                                                 api_key=self._key(), base_url=self.base_url,
                                                 settings=self.settings))

    def _key(self) -> str | None:
        credential = self.credential
        return self._api_key if credential is None else credential.key()

    def _signed(self, prepared: PreparedRequest) -> PreparedRequest:
        return prepared if self.credential is None else self.credential.apply(prepared)

    def decode(self, raw: RawResponse, errors: ErrorSpec | None = None) -> Any:
        """The decoded JSON of a whole answer, or the error it carries (classified by
        *errors*, an operation's spec; default the manifest's)."""
        self.refuse_redirect(raw.status, raw.headers)
        if raw.status >= 400:
            raise self.error_for(raw.status, raw.headers, raw.body, errors)
        try:
            return json.loads(raw.body.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EngineError("malformed_response", f"HTTP {raw.status} body is not JSON: "
                              f"{excerpt(raw.body, 120)!r}", status=raw.status,
                              provider=self.provider, retryable=False) from None

    def error_for(self, status: int, headers: Mapping[str, str], body: bytes,
                  errors: ErrorSpec | None = None) -> EngineError:
        error = classify(self.manifest, status, headers, body, spec=errors)
        if error.kind == "authentication" and self.credential is not None:
            self.credential.forget()  # the next call fetches a new token
        return error

    def stream_refused(self, head: Head, body: bytes) -> EngineError:
        """The error of a stream request answered with an error status or one JSON body."""
        if head.status >= 400 or carries_error(self.manifest, body):
            return self.error_for(head.status, head.headers, body)
        return EngineError("malformed_response", f"a stream was asked for, but HTTP "
                           f"{head.status} answered with one JSON document: "
                           f"{excerpt(body, 160)!r}", status=head.status,
                           provider=self.provider, retryable=False)

    def refuse_redirect(self, status: int, headers: Mapping[str, str]) -> None:
        """A 3xx is an error: following it could carry the key to another origin."""
        if 300 <= status < 400:
            where = redact(headers.get("location", "an unnamed location"))
            raise EngineError("invalid_request", f"HTTP {status} redirect to {where} was not "
                              f"followed (credentials are never sent to another address); "
                              f"set base_url to the final address", status=status,
                              provider=self.provider, retryable=False)

    def interpret(self, raw: RawResponse) -> ChatResponse:
        """The normalized answer of a whole response, or the error it carries."""
        data = self.decode(raw)
        try:
            return self.with_headers(map_whole(self.manifest, data, self.model), raw.headers)
        except (ValueError, TypeError, OverflowError, KeyError, AttributeError,
                RecursionError) as exc:  # odd data reaching the mapping
            raise EngineError("malformed_response", f"cannot map the response: "
                              f"{type(exc).__name__}: {exc}", status=raw.status,
                              provider=self.provider, retryable=False) from None

    @staticmethod
    def with_headers(response: ChatResponse, headers: Mapping[str, str]) -> ChatResponse:
        return dataclasses.replace(response, headers=public_headers(headers))

    def decoder(self, max_frame_bytes: int | None) -> StreamDecoder:
        if self._rules is None:
            self._rules = FrameRules(self.manifest)
        return StreamDecoder(self.manifest, self.model, max_frame_bytes=max_frame_bytes,
                             rules=self._rules)

    def next_delay(self, error: EngineError, attempt: int, policy: RetryPolicy) -> float | None:
        """Seconds to wait before retrying, or None to give up on this model."""
        if not policy.should_retry(error, attempt):
            return None
        delay = policy.delay(error, attempt, self.clock.rng)
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
            request_id=request_id(self.manifest.response_headers, response.headers),
            cost_usd=self.manifest.cost_usd(self.model, usage.prompt_tokens,
                                            usage.completion_tokens, usage.cached_tokens),
            rate_limit=rate_limit(self.manifest.response_headers, response.headers),
        )

    def __repr__(self) -> str:
        return f"{self.provider}/{self.model}"


class Chain:
    """The models a client tries in order; the first is the primary."""

    def __init__(self, models: str | Sequence[str], load: Callable[[str], Manifest], *,
                 api_key: PerModel, base_url: PerModel, max_retries: int | None,
                 retry: RetryPolicy | None, clock: Clock | None,
                 hooks: HookSet | None = None, settings: Mapping[str, str] | None = None,
                 credentials: CredentialFactory | None = None) -> None:
        ids = [models] if isinstance(models, str) else list(models)
        self.hooks = hooks or HookSet()
        if not ids:
            raise EngineError("invalid_request", "no model given", retryable=False)
        self.clock = clock or Clock()
        manifests = [load(split_model(m)[0]) for m in ids]
        check_setting_names(settings or {}, manifests)
        self.targets = [Target(m, manifest, api_key=api_key, base_url=base_url,
                               max_retries=max_retries, retry=retry, clock=self.clock,
                               settings=settings, credentials=credentials)
                        for m, manifest in zip(ids, manifests, strict=True)]

    def stale_credentials(self) -> bool:
        """Whether a credential must be fetched (I/O) before the next request renders."""
        return any(t.credential is not None and t.credential.stale() for t in self.targets)

    def refresh_credentials(self) -> None:
        """Fetch every stale credential (runs commands, reads credential files)."""
        for target in self.targets:
            if target.credential is not None and target.credential.stale():
                target.credential.refresh()

    @property
    def primary(self) -> Target:
        return self.targets[0]

    def only(self, target: Target) -> Chain:
        """This chain (clock, hooks) reduced to *target*: no fallback."""
        chain = copy.copy(self)
        chain.targets = [target]
        return chain

    def falls_back(self, error: EngineError, index: int, policy: RetryPolicy) -> bool:
        """After *error* exhausted model *index*: try the next one?"""
        if index + 1 >= len(self.targets):
            return False
        if not (error.retryable or error.kind in policy.fallback_on):
            return False
        log.debug("falling back from %r to %r after %s", self.targets[index],
                  self.targets[index + 1], error.kind)
        return True

    def __repr__(self) -> str:
        return ", ".join(repr(t) for t in self.targets)


# ---------------------------------------------------------------- plans

class _Progress:
    """What the user has seen of one stream so far (shared by its attempts)."""

    __slots__ = ("decoder", "delivered", "ttft")

    def __init__(self) -> None:
        self.delivered = False
        self.ttft: float | None = None
        self.decoder: StreamDecoder | None = None


Attempt = Callable[[int, Target, CallInfo | None],
                   Generator[Step, Outcome, tuple[Any, float | None]]]
# (target, answer, started, attempts, ttft) -> (the answer as the user gets it, its stats)
Finish = Callable[[Target, Any, float, int, "float | None"], tuple[Any, Stats]]


@dataclass(frozen=True, slots=True)
class Call:
    """What one walk over the chain is for: the operation and how its answer ends."""

    operation: str
    stream: bool
    params: Mapping[str, Any]
    finish: Finish


def chat_call(request: ChatRequest, stream: bool) -> Call:
    def finish(target: Target, response: Any, started: float, attempts: int,
               ttft: float | None) -> tuple[Any, Stats]:
        tool = answer_tool(request, target.manifest.for_model(target.model))
        if tool is not None:
            response = unwrapped(response, tool)
        response = parse_answer(response, request)
        return response, target.stats(response, started, attempts, ttft)

    return Call("chat", stream, request.params, finish)


def walk(chain: Chain, policy_for: Callable[[Target], RetryPolicy], attempt_once: Attempt,
         call: Call, progress: _Progress | None = None) -> Plan:
    """Attempts over the chain: retry, fall back, or raise what must reach the user.

    Every operation's plan is built on this one walk (``engine.protocol.operations``)."""
    progress = progress or _Progress()
    started = chain.clock.monotonic()
    spent = 0  # attempts on earlier models
    for index, target in enumerate(chain.targets):
        policy = policy_for(target)
        attempt = 0
        while True:
            info = _info(chain, target, call, spent + attempt + 1)
            try:
                response, ttft = yield from attempt_once(index, target, info)
                response, stats = call.finish(target, response, started,
                                              spent + attempt + 1, ttft)
                _answered(chain, info, response, stats)
                return response, stats
            except EngineError as error:
                error.attempts = spent + attempt + 1
                if progress.delivered:
                    if error.partial is None and progress.decoder is not None:
                        error.partial = progress.decoder.response
                    _failed(chain, info, error, False)
                    raise
                delay = target.next_delay(error, attempt, policy)
                if delay is None:
                    spent += attempt + 1
                    falls_back = chain.falls_back(error, index, policy)
                    _failed(chain, info, error, falls_back)
                    if not falls_back:
                        raise
                    break
                _failed(chain, info, error, True)
            yield Sleep(delay)
            attempt += 1
    raise AssertionError("unreachable: the last model raises")  # pragma: no cover


# ---------------------------------------------------------------- hooks

def _info(chain: Chain, target: Target, call: Call, attempt: int) -> CallInfo | None:
    if not chain.hooks:
        return None
    return CallInfo(call.operation, target.provider, target.model, call.stream, attempt,
                    dict(call.params), state={"started": chain.clock.monotonic()})


def _sending(chain: Chain, info: CallInfo | None, prepared: PreparedRequest) -> None:
    if info is not None:
        info.request = prepared.describe()
        chain.hooks.fire("on_request", info)


def _answered(chain: Chain, info: CallInfo | None, response: Any, stats: Stats) -> None:
    if info is not None:
        info.latency_ms = (chain.clock.monotonic() - info.state["started"]) * 1000.0
        usage = getattr(response, "usage", None)
        info.usage = usage if isinstance(usage, Usage) else Usage(
            stats.prompt_tokens, stats.completion_tokens, stats.total_tokens)
        info.finish_reason = getattr(response, "finish_reason", None)
        info.cost_usd = stats.cost_usd
        chain.hooks.fire("on_response", info)


def _failed(chain: Chain, info: CallInfo | None, error: EngineError, will_retry: bool) -> None:
    if info is not None:
        info.latency_ms = (chain.clock.monotonic() - info.state["started"]) * 1000.0
        info.error, info.will_retry = error, will_retry
        if info.status is None:
            info.status = error.status
        chain.hooks.fire("on_error", info)


def downloading(chain: Chain, request: ChatRequest, stream: bool, timeouts: Timeouts | None,
                then: Callable[[Fetched], Plan]) -> Plan | None:
    """None when no model wants a URL part as bytes; else the plan that downloads them
    (after refusing, before anything is sent, what no download would fix) and goes on
    with *then*."""
    jobs = media.downloads([t.manifest.for_model(t.model) for t in chain.targets], request)
    if not jobs:
        return None
    for target in chain.targets:
        check_capabilities(target.manifest, request, stream, pending=True, model=target.model)
    return _download_all(jobs, timeouts, then)


def _download_all(jobs: Mapping[str, media.Download], timeouts: Timeouts | None,
                  then: Callable[[Fetched], Plan]) -> Plan:
    fetched: dict[str, Part] = {}
    for url, job in jobs.items():
        fetched[url] = yield from _download(job, timeouts)
    return (yield from then(fetched))


def _download(job: media.Download, timeouts: Timeouts | None
              ) -> Generator[Step, Outcome, Part]:
    url = job.url
    for _ in range(media.MAX_REDIRECTS + 1):
        outcome = yield Fetch(media.fetch_request(url, job.kind), job.limit + 1, timeouts)
        assert isinstance(outcome, (RawResponse, EngineError))
        got = media.read(job, url, outcome)
        if isinstance(got, Part):
            return got
        url = got
    raise EngineError("invalid_request", f"downloading the {job.kind} part at "
                      f"{media.shown(job.url)} failed: more than {media.MAX_REDIRECTS} "
                      f"redirects", retryable=False)


def call_plan(chain: Chain, request: ChatRequest,
              policy_for: Callable[[Target], RetryPolicy],
              timeouts: Timeouts | None = None, fetched: Fetched | None = None) -> Plan:
    """The plan of one plain call; every model's request is rendered before anything is sent.

    URL parts a model takes only as bytes are downloaded first (*fetched* holds them).
    """
    if fetched is None:
        first = downloading(chain, request, False, timeouts,
                            lambda got: call_plan(chain, request, policy_for, timeouts, got))
        if first is not None:
            return first
    prepared = [target.prepare(target.inlined(request, fetched),
                               stream=False) for target in chain.targets]

    def once(index: int, target: Target, info: CallInfo | None
             ) -> Generator[Step, Outcome, tuple[ChatResponse, float | None]]:
        _sending(chain, info, prepared[index])
        outcome = yield Send(target, prepared[index], timeouts)
        if isinstance(outcome, EngineError):
            raise outcome
        assert isinstance(outcome, RawResponse)
        if info is not None:
            info.status = outcome.status
        return target.interpret(outcome), None

    return walk(chain, policy_for, once, chat_call(request, False))


def stream_plan(chain: Chain, request: ChatRequest,
                policy_for: Callable[[Target], RetryPolicy],
                max_frame_bytes: int | None = None, timeouts: Timeouts | None = None,
                fetched: Fetched | None = None) -> Plan:
    """The plan of one stream; every model's request is rendered before anything is sent.

    ``timeouts.read`` is also the longest pause between two events: bytes that
    make no event (keep-alive comments) do not reset it. URL parts are
    downloaded first as in :func:`call_plan`.
    """
    if fetched is None:
        first = downloading(chain, request, True, timeouts, lambda got: stream_plan(
            chain, request, policy_for, max_frame_bytes, timeouts, got))
        if first is not None:
            return first
    prepared = [target.prepare(target.inlined(request, fetched),
                               stream=True) for target in chain.targets]
    progress = _Progress()

    def once(index: int, target: Target, info: CallInfo | None
             ) -> Generator[Step, Outcome, tuple[ChatResponse, float | None]]:
        _sending(chain, info, prepared[index])
        head = yield Open(target, prepared[index], timeouts)
        if isinstance(head, EngineError):
            raise head
        assert isinstance(head, Head)
        if info is not None:
            info.status = head.status
        target.refuse_redirect(head.status, head.headers)
        if head.status >= 400 or _is_json(head):
            body = yield ReadAll(ERROR_BODY_LIMIT)
            if isinstance(body, EngineError):
                raise body
            assert isinstance(body, bytes)
            raise target.stream_refused(head, body)
        decoder = progress.decoder = target.decoder(max_frame_bytes)
        quiet = _Quiet(chain.clock, timeouts, target.provider)
        tool = answer_tool(request, target.manifest.for_model(target.model))
        answer = AnswerTool(tool) if tool is not None else None
        while True:
            chunk = yield READ
            if isinstance(chunk, EngineError):
                raise chunk
            assert isinstance(chunk, bytes)
            decoder.receive_data(chunk)
            events, ended, failure = _pull(decoder)
            if answer is not None:
                events = answer(events)
            if events:
                _note(events, progress, chain.clock)
                quiet.reset()
                yield Emit(events)
            elif chunk and not ended and failure is None:
                quiet.check()
            if failure is not None:
                raise failure
            if ended:
                yield Drain(DRAIN_LIMIT, DRAIN_SECONDS)
                return target.with_headers(decoder.response, head.headers), progress.ttft

    return walk(chain, policy_for, once, chat_call(request, True), progress)


def _pull(decoder: StreamDecoder) -> tuple[list[StreamEvent], bool, EngineError | None]:
    """Every event the decoder has ready, whether it ended, and the error that followed them."""
    events: list[StreamEvent] = []
    try:
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                return events, False, None
            if event is END:
                return events, True, None
            events.append(event)  # type: ignore[arg-type]
    except EngineError as error:
        return events, False, error


def _note(events: list[StreamEvent], progress: _Progress, clock: Clock) -> None:
    progress.delivered = True
    if progress.ttft is None and any(_is_output(e) for e in events):
        progress.ttft = clock.monotonic()


def _is_output(event: StreamEvent) -> bool:
    """The model produced something: text, thinking, or a piece of a tool call (ttft)."""
    return (event.is_content_delta or event.is_thinking_delta or event.is_tool_call_started
            or event.is_tool_call_delta)


def _is_json(head: Head) -> bool:
    """A stream request answered with one JSON document (an error, not a stream)."""
    media = head.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json"


class _Quiet:
    """The read timeout between events: bytes that make no event (keep-alives) don't count."""

    def __init__(self, clock: Clock, timeouts: Timeouts | None, provider: str) -> None:
        self.clock = clock
        self.limit = timeouts.read if timeouts is not None else None
        self.provider = provider
        self.since = clock.monotonic()

    def reset(self) -> None:
        self.since = self.clock.monotonic()

    def check(self) -> None:
        if self.limit is not None and self.clock.monotonic() - self.since > self.limit:
            raise EngineError("timeout", f"no stream event within the read timeout of "
                              f"{self.limit}s (only keep-alive bytes arrived)",
                              provider=self.provider, retryable=False)
