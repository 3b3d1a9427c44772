"""Facts about a response that live in its headers: request id, rate-limit state. Pure.

The manifest names the headers (``response_headers`` in the manifest, compiled
to :class:`~engine.manifest.model.HeaderFacts`); this module reads them from
the lower-cased headers of the answer that succeeded. Counts are integers;
resets are seconds from now, read from a number of seconds, a duration
(``"6m0s"``, ``"120ms"``), an HTTP-date or an RFC 3339 time. What cannot be
read is None, never an error: a header is information, not a contract.
:func:`public_headers` is the header mapping a response exposes: cookies
dropped, every registered secret redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from ..errors import redact
from ..manifest.model import HeaderFacts
from ..retry import parse_retry_value
from ..types import RateLimit

__all__ = ["public_headers", "rate_limit", "request_id"]

_PRIVATE = frozenset({"set-cookie", "set-cookie2"})


def public_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: redact(value) for name, value in headers.items() if name not in _PRIVATE}


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def request_id(facts: HeaderFacts, headers: Mapping[str, str]) -> str | None:
    return _first(headers, facts.request_id)


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split(",")[0].strip())
    except ValueError:
        return None


def _reset(text: str | None, now: datetime | None = None) -> float | None:
    if text is None:
        return None
    seconds = parse_retry_value(text, "s", now)
    if seconds is not None:
        return seconds
    try:  # RFC 3339, as some providers send their reset times
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def rate_limit(facts: HeaderFacts, headers: Mapping[str, str],
               now: datetime | None = None) -> RateLimit | None:
    """The rate-limit state the headers report, or None when the manifest names none."""
    if not facts.rate_limit:
        return None
    found = {name: _first(headers, names) for name, names in facts.rate_limit.items()}
    if all(value is None for value in found.values()):
        return None
    return RateLimit(
        requests_limit=_count(found.get("requests_limit")),
        requests_remaining=_count(found.get("requests_remaining")),
        requests_reset=_reset(found.get("requests_reset"), now),
        tokens_limit=_count(found.get("tokens_limit")),
        tokens_remaining=_count(found.get("tokens_remaining")),
        tokens_reset=_reset(found.get("tokens_reset"), now),
    )
