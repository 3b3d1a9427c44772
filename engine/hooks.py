"""Observability hooks: what a client tells the code that watches it. Pure.

A hook is any object with one or more of ``on_request(info)``,
``on_response(info)`` and ``on_error(info)``; pass a list of them as
``AiClient.create(..., hooks=[...])``. For every attempt (every request made,
retries and fallbacks included) the plan calls ``on_request`` just before it
is sent, then exactly one of ``on_response`` (the call succeeded with this
attempt) or ``on_error`` (it failed; ``info.will_retry`` says whether another
attempt follows). Each receives the same :class:`CallInfo`, filled as the
attempt goes, so a hook can keep its own state in ``info.state`` between the
two calls (a tracing span, a timer).

A hook never breaks a call: whatever it raises is logged on the ``engine``
logger and ignored. ``info.request`` is the redacted ``METHOD url``; no
message content and no key is ever in a ``CallInfo``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EngineError
from .inputs import invalid
from .types import Usage

__all__ = ["HOOK_METHODS", "CallInfo", "HookSet"]

log = logging.getLogger("engine")
HOOK_METHODS = ("on_request", "on_response", "on_error")


@dataclass
class CallInfo:
    """One attempt, as the hooks see it."""

    operation: str
    provider: str
    model: str
    stream: bool
    attempt: int  # 1-based, over the whole call (retries and fallbacks count)
    params: Mapping[str, Any]  # temperature, max_tokens, top_p, stop, seed as asked
    request: str = ""  # "METHOD url", secrets redacted
    status: int | None = None
    latency_ms: float | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    cost_usd: float | None = None  # when the manifest's catalogue prices the model
    error: EngineError | None = None
    will_retry: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # for the hooks' own use


class HookSet:
    """The hooks of one client, called in order; a failing hook is logged, never raised."""

    def __init__(self, hooks: Sequence[Any] = ()) -> None:
        if isinstance(hooks, (str, bytes, Mapping)) or not isinstance(hooks, Sequence):
            raise invalid(f"hooks must be a list of hook objects, got {type(hooks).__name__}")
        for hook in hooks:
            if not any(callable(getattr(hook, name, None)) for name in HOOK_METHODS):
                raise invalid(f"a hook needs one of {', '.join(HOOK_METHODS)}; "
                              f"{type(hook).__name__} has none")
        self._hooks = tuple(hooks)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def adding(self, hook: Any) -> HookSet:
        return HookSet([*self._hooks, hook])

    def fire(self, event: str, info: CallInfo) -> None:
        for hook in self._hooks:
            method = getattr(hook, event, None)
            if method is None:
                continue
            try:
                method(info)
            except Exception:  # a hook must never break the call it watches
                log.warning("hook %s.%s failed", type(hook).__name__, event, exc_info=True)
