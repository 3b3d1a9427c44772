"""Retry policy as data, backoff arithmetic and retry-hint parsing. Pure.

:class:`RetryPolicy` says which error kinds are retried, how many times, and
how long to wait: exponential backoff with full jitter
(``uniform(0, min(cap, base * 2**attempt))``), replaced by the provider's own
hint (``retry-after`` and the like) when it gave one and the policy honours
it, capped at ``max_retry_after``. A hint larger than the cap means "give up
now" rather than sleeping less than the provider asked.
"""

from __future__ import annotations

import email.utils
import random
import re
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

from . import inputs
from .errors import DEFAULT_RETRYABLE, KINDS, EngineError

__all__ = ["RetryPolicy", "parse_duration", "parse_retry_value"]

_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|h|m|s)", re.IGNORECASE)
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a client retries. Build from a manifest, override per client or per call."""

    max_retries: int = 2
    retry_on: frozenset[str] = DEFAULT_RETRYABLE
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    honor_retry_after: bool = True
    max_retry_after: float = 60.0
    # With a fallback chain, these kinds also move on to the next model
    # (retryable kinds always do once their retries are spent).
    fallback_on: frozenset[str] = frozenset({"not_found"})

    def __post_init__(self) -> None:
        # Checked here, so a policy built by hand, by a manifest or by overrides is sound.
        inputs.integer("max_retries", self.max_retries, 0, 100)
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            inputs.number(name, getattr(self, name), 0.0)
        if not isinstance(self.honor_retry_after, bool):
            raise inputs.invalid(f"honor_retry_after must be a bool, got "
                                 f"{type(self.honor_retry_after).__name__}")
        for name in ("retry_on", "fallback_on"):
            object.__setattr__(self, name, _kinds(name, getattr(self, name)))

    def with_overrides(self, **changes: Any) -> RetryPolicy:
        """A copy with the given fields changed (``None`` values are ignored)."""
        known = [spec.name for spec in fields(self)]
        for name in changes:
            inputs.choice("retry option", name, known)
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean)

    def should_retry(self, error: EngineError, attempt: int) -> bool:
        """Whether to try again after *error* on 0-based *attempt*."""
        if attempt >= self.max_retries:
            return False
        if error.retry_forced is not None:  # the provider said so explicitly
            if not error.retry_forced:
                return False
        elif error.kind not in self.retry_on or not error.retryable:
            return False
        return not (error.retry_after is not None and self.honor_retry_after
                    and error.retry_after > self.max_retry_after)

    def delay(self, error: EngineError, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number *attempt* + 1."""
        if error.retry_after is not None and self.honor_retry_after:
            return max(0.0, min(error.retry_after, self.max_retry_after))
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return (rng or random).uniform(0.0, cap)


def _kinds(name: str, value: Any) -> frozenset[str]:
    """A set of error kinds; a typo is an error (it would silently never match)."""
    if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
        raise inputs.invalid(f"{name} must be a set of error kinds, got "
                             f"{type(value).__name__} {value!r:.60}")
    for kind in value:
        inputs.choice(f"{name} entry", kind, KINDS)
    return frozenset(value)


def parse_duration(text: str) -> float | None:
    """``"34.4s"``, ``"120ms"``, ``"6m0s"``, ``"1h2m"`` -> seconds; None if not one."""
    text = text.strip()
    pos, total, seen = 0, 0.0, False
    for match in _DURATION.finditer(text):
        if text[pos:match.start()].strip():
            return None
        total += float(match["num"]) * _SCALE[match["unit"].lower()]
        pos, seen = match.end(), True
    if not seen or text[pos:].strip():
        return None
    return total


def parse_retry_value(value: Any, unit: str = "auto", now: datetime | None = None) -> float | None:
    """Interpret a retry hint: a number (in *unit*), a duration string or an HTTP-date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value) / 1000.0 if unit == "ms" else float(value)
        return seconds if seconds >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return parse_retry_value(float(text), unit)
    except ValueError:
        pass
    duration = parse_duration(text)
    if duration is not None:
        return duration
    return _http_date(text, now)


def _http_date(text: str, now: datetime | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())
