"""The sans-I/O plans of ``embed``, ``list_models`` and ``count_tokens``.

Each request of these operations is one :func:`~engine.protocol.plan.walk`
over the chain, exactly like a chat call: the same steps, retries, hooks,
error classification (with the operation's own ``errors`` rules) and
drivers. What differs is only how many requests a call makes and how their
answers are stitched:

- ``embed`` splits the inputs into requests of at most ``max_inputs`` texts
  (the smallest of the chain's manifests), sends them in order and returns
  one vector per input, in input order. Every model of the chain must
  describe ``embed``. The first request may fall back along the chain; the
  rest go to the model that answered it, because vectors of two models are
  not comparable and are never mixed in one answer.
- ``list_models`` reads the primary model's provider list page by page
  (``pages``), until no next cursor, and refuses a cursor seen before.
- ``count_tokens`` renders the chat request for the primary's counter.

Every request of a call is rendered before it is sent; a request a manifest
cannot express is refused before the first one is.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from ..errors import EngineError
from ..limits import Timeouts
from ..manifest.model import EmbedSpec
from ..retry import RetryPolicy
from ..types import ChatRequest, EmbedRequest, EmbedResponse, EmbedUsage, ModelInfo, Stats
from .extract import embed_answer, model_page, token_count
from .metadata import rate_limit, request_id
from .plan import (
    Call,
    Chain,
    Fetched,
    Finish,
    Outcome,
    Plan,
    RawResponse,
    Send,
    Step,
    Target,
    downloading,
    walk,
)
from .render import PreparedRequest, check_embed, lacks_operation

__all__ = ["MAX_REQUESTS", "count_tokens_plan", "embed_plan", "list_models_plan"]

# The most requests one embed call makes unless the caller allows more.
MAX_REQUESTS = 1000

Policy = Callable[[Target], RetryPolicy]


def _refuse(message: str, provider: str) -> EngineError:
    return EngineError("invalid_request", message, provider=provider, retryable=False)


def _stats(target: Target, started: float, attempts: int, prompt: int | None,
           total: int | None, headers: dict[str, str]) -> Stats:
    manifest = target.manifest
    facts = manifest.response_headers
    return Stats(
        prompt_tokens=prompt or 0,
        completion_tokens=0,
        total_tokens=total or 0,
        latency_ms=(target.clock.monotonic() - started) * 1000.0,
        attempts=attempts,
        model=target.model,
        provider=target.provider,
        request_id=request_id(facts, headers),
        rate_limit=rate_limit(facts, headers),
        cost_usd=manifest.cost_usd(target.model, prompt, 0, None),
    )


Tokens = Callable[[Any], "tuple[int | None, int | None]"]


def _no_tokens(value: Any) -> tuple[int | None, int | None]:
    return None, None


def _finisher(tokens: Tokens = _no_tokens) -> Finish:
    """Keep the answer (with the target that gave it); the stats of one request, its
    (prompt, total) tokens read by *tokens* from what the request's reader made."""
    def finish(target: Target, answer: Any, started: float, attempts: int,
               ttft: float | None) -> tuple[Any, Stats]:
        prompt, total = tokens(answer[0])
        return (target, answer), _stats(target, started, attempts, prompt, total, answer[1])

    return finish


def _embed_tokens(value: Any) -> tuple[int | None, int | None]:
    (_, prompt, total, _), _ = value
    return (prompt if prompt is not None else total), (total if total is not None else prompt)


def _one(chain: Chain, policy_for: Policy, call: Call, timeouts: Timeouts | None,
         prepare: Callable[[Target], PreparedRequest],
         read: Callable[[Target, RawResponse], Any]
         ) -> Generator[Step, Outcome, tuple[Target, Any, dict[str, str], int]]:
    """One request over *chain*: (the target that answered, what *read* made of its
    answer, the answer's headers, the attempts it took)."""
    prepared = [prepare(target) for target in chain.targets]

    def once(index: int, target: Target, info: Any
             ) -> Generator[Step, Outcome, tuple[Any, float | None]]:
        if info is not None:
            info.request = prepared[index].describe()
            chain.hooks.fire("on_request", info)
        outcome = yield Send(target, prepared[index], timeouts)
        if isinstance(outcome, EngineError):
            raise outcome
        assert isinstance(outcome, RawResponse)
        if info is not None:
            info.status = outcome.status
        return (read(target, outcome), outcome.headers), None

    (target, (value, headers)), stats = yield from walk(chain, policy_for, once, call)
    return target, value, headers, stats.attempts


# ---------------------------------------------------------------- embed

def _batch_size(chain: Chain, request: EmbedRequest) -> int:
    sizes = []
    for target in chain.targets:
        if target.manifest.embed is None:
            raise lacks_operation(target.manifest, "embed")
        spec = check_embed(target.manifest, request)
        if spec.max_inputs is not None:
            sizes.append(spec.max_inputs)
    limit = min(sizes, default=None)
    if request.batch_size is None:
        return limit or len(request.inputs)
    if limit is not None and request.batch_size > limit:
        raise _refuse(f"batch_size={request.batch_size} is more than the {limit} texts one "
                      f"request may carry (embed.max_inputs)", chain.primary.provider)
    return request.batch_size


def embed_plan(chain: Chain, request: EmbedRequest, policy_for: Policy,
               timeouts: Timeouts | None = None, max_requests: int = MAX_REQUESTS) -> Plan:
    """The plan of one embed call; refuses what cannot be sent before returning it."""
    if not request.inputs:
        raise _refuse("embed needs at least one input text", chain.primary.provider)
    size = _batch_size(chain, request)
    batches = [request.inputs[i:i + size] for i in range(0, len(request.inputs), size)]
    if len(batches) > max_requests:
        raise _refuse(f"{len(request.inputs)} inputs need {len(batches)} requests of at most "
                      f"{size}, more than max_requests={max_requests}; raise max_requests "
                      f"or split the call", chain.primary.provider)
    for target in chain.targets:  # every request renders before the first is sent
        for batch in batches:
            target.prepare_embed(request, batch)
    return _embed(chain, request, batches, policy_for, timeouts)


def _embed(chain: Chain, request: EmbedRequest, batches: Sequence[tuple[str, ...]],
           policy_for: Policy, timeouts: Timeouts | None) -> Plan:
    started = chain.clock.monotonic()
    vectors: list[list[float]] = []
    raws: list[Any] = []
    prompt: int | None = None
    total: int | None = None
    model: str | None = None
    attempts = 0
    pinned: Target | None = None
    headers: dict[str, str] = {}
    for batch in batches:
        sub = chain if pinned is None else chain.only(pinned)
        params = {"inputs": len(batch), "dimensions": request.dimensions,
                  "input_type": request.input_type}
        call = Call("embed", False, params, _finisher(_embed_tokens))
        pinned, (page, data), headers, spent = yield from _one(
            sub, policy_for, call, timeouts, _embed_prepare(request, batch),
            _embed_read(len(batch)))
        attempts += spent
        found, asked, counted, named = page
        vectors.extend(found)
        raws.append(data)
        prompt = _add(prompt, asked if asked is not None else counted)
        total = _add(total, counted if counted is not None else asked)
        model = model or named
    assert pinned is not None
    response = EmbedResponse(vectors, EmbedUsage(prompt, total), model or pinned.model,
                             pinned.provider, raws)
    return response, _stats(pinned, started, attempts, prompt, total, headers)


def _embed_prepare(request: EmbedRequest, batch: Sequence[str]
                   ) -> Callable[[Target], PreparedRequest]:
    return lambda target: target.prepare_embed(request, batch)


def _embed_read(expected: int) -> Callable[[Target, RawResponse], tuple[Any, Any]]:
    def read(target: Target, raw: RawResponse) -> tuple[Any, Any]:
        spec = target.manifest.embed
        assert isinstance(spec, EmbedSpec)
        data = target.decode(raw, spec.errors)
        return embed_answer(spec, data, expected, target.provider), data

    return read


def _add(total: int | None, value: int | None) -> int | None:
    if value is None:
        return total
    return value if total is None else total + value


# ---------------------------------------------------------------- list_models

def list_models_plan(chain: Chain, policy_for: Policy,
                     timeouts: Timeouts | None = None) -> Plan:
    """The plan listing the primary model's provider models, every page."""
    target = chain.primary
    if target.manifest.list_models is None:
        raise lacks_operation(target.manifest, "list_models")
    target.prepare_list_models(None)
    return _list(chain.only(target), policy_for, timeouts)


def _list(chain: Chain, policy_for: Policy, timeouts: Timeouts | None) -> Plan:
    target = chain.primary
    spec = target.manifest.list_models
    assert spec is not None
    started = chain.clock.monotonic()
    models: dict[str, ModelInfo] = {}
    cursor: str | None = None
    seen: set[str] = set()
    attempts = 0
    headers: dict[str, str] = {}
    for _ in range(spec.max_pages):
        call = Call("list_models", False, {"cursor": cursor}, _finisher())
        _, (page, next_cursor), headers, spent = yield from _one(
            chain, policy_for, call, timeouts, _list_prepare(cursor), _model_page)
        attempts += spent
        for info in page:
            models.setdefault(info.id, info)
        if next_cursor is None:
            return list(models.values()), _stats(target, started, attempts, None, None,
                                                 headers)
        if next_cursor in seen:
            raise EngineError("malformed_response", f"the model list repeats the page "
                              f"cursor {next_cursor!r}", provider=target.provider,
                              retryable=False)
        seen.add(next_cursor)
        cursor = next_cursor
    raise EngineError("malformed_response", f"the model list did not end after "
                      f"{spec.max_pages} pages (list_models.pages.max_pages)",
                      provider=target.provider, retryable=False)


def _list_prepare(cursor: str | None) -> Callable[[Target], PreparedRequest]:
    return lambda target: target.prepare_list_models(cursor)


def _model_page(target: Target, raw: RawResponse) -> tuple[list[ModelInfo], str | None]:
    spec = target.manifest.list_models
    assert spec is not None
    return model_page(spec, target.manifest, target.decode(raw, spec.errors))


# ---------------------------------------------------------------- count_tokens

def count_tokens_plan(chain: Chain, request: ChatRequest, policy_for: Policy,
                      timeouts: Timeouts | None = None, fetched: Fetched | None = None) -> Plan:
    """The plan counting *request*'s prompt tokens with the primary's counter
    (URL parts it takes only as bytes downloaded first, as for a chat call)."""
    target = chain.primary
    if target.manifest.count_tokens is None:
        raise lacks_operation(target.manifest, "count_tokens")
    if fetched is None:
        first = downloading(chain.only(target), request, False, timeouts, lambda got: (
            count_tokens_plan(chain, request, policy_for, timeouts, got)))
        if first is not None:
            return first
    prepared = target.prepare_count_tokens(target.inlined(request, fetched))
    return _count(chain.only(target), prepared, policy_for, timeouts)


def _count(chain: Chain, prepared: PreparedRequest, policy_for: Policy,
           timeouts: Timeouts | None) -> Plan:
    target = chain.primary
    started = chain.clock.monotonic()
    call = Call("count_tokens", False, {}, _finisher(lambda count: (count, count)))

    def ready(_: Target) -> PreparedRequest:
        return prepared

    _, count, headers, attempts = yield from _one(
        chain, policy_for, call, timeouts, ready, _token_count)
    return count, _stats(target, started, attempts, count, count, headers)


def _token_count(target: Target, raw: RawResponse) -> int:
    spec = target.manifest.count_tokens
    assert spec is not None
    return token_count(spec.tokens, target.decode(raw, spec.errors), target.provider)
