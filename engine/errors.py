"""The one error root of the library.

Every exception the library raises is an :class:`EngineError`, and precisely
an instance of the class of its ``kind`` (``EngineError("rate_limited", ...)``
builds a :class:`RateLimitError`), so both ``except RateLimitError:`` and
``if error.kind == "rate_limited":`` work. Foreign exceptions (httpx, yaml,
jinja2, jmespath, cerberus, json) are caught at the boundary where they can
occur and re-raised as the ``EngineError`` of the kind that says what went
wrong in provider-neutral terms::

    EngineError
     ├── InvalidRequestError          invalid_request
     │    └── ManifestError           a manifest is missing, malformed or fails to render
     ├── AuthenticationError          authentication
     ├── PermissionDeniedError        permission_denied
     ├── NotFoundError                not_found
     ├── ContextLengthExceededError   context_length_exceeded
     ├── RateLimitError               rate_limited
     ├── QuotaExhaustedError          quota_exhausted
     ├── ContentFilteredError         content_filtered
     ├── OverloadedError              overloaded
     ├── ServerError                  server_error
     ├── RequestTimeoutError          timeout
     ├── APIConnectionError           connection
     ├── IncompleteStreamError        incomplete_stream
     ├── MalformedResponseError       malformed_response
     └── RequestCancelledError        cancelled

(The timeout and connection classes are named so that a star-import does not
shadow the builtins ``TimeoutError`` and ``ConnectionError``.)

An error never carries the API key: :func:`redact` scrubs every registered
secret from messages before they are stored.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from typing import Any, Literal, get_args

ErrorKind = Literal[
    "invalid_request",
    "authentication",
    "permission_denied",
    "not_found",
    "context_length_exceeded",
    "rate_limited",
    "quota_exhausted",
    "content_filtered",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "incomplete_stream",
    "malformed_response",
    "cancelled",
]

KINDS: frozenset[str] = frozenset(get_args(ErrorKind))

# Kinds that a retry may cure. A manifest or a client may narrow or widen this.
DEFAULT_RETRYABLE: frozenset[str] = frozenset(
    {"rate_limited", "overloaded", "server_error", "timeout", "connection"}
)

__all__ = [
    "DEFAULT_RETRYABLE",
    "ERROR_CLASSES",
    "KINDS",
    "APIConnectionError",
    "AuthenticationError",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "EngineError",
    "ErrorKind",
    "IncompleteStreamError",
    "InvalidRequestError",
    "MalformedResponseError",
    "ManifestError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestTimeoutError",
    "ServerError",
    "excerpt",
    "redact",
    "register_secret",
]

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_short: dict[str, re.Pattern[str]] = {}
# What redact() reads, without the lock: rebuilt (longest first) whenever a secret is
# registered, which happens at client creation, never per request.
_snapshot: tuple[tuple[str, ...], tuple[re.Pattern[str], ...]] = ((), ())
_REDACTED = "[REDACTED]"
# Below this length a secret is redacted only where it stands alone (between
# characters that cannot be part of a key), so a short "key" such as "abc"
# does not mangle every word containing those letters, and is never shown.
_SHORT = 8


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` removes it from any text, whatever its length.

    Its URL-encoded and base64 forms are remembered too (a key in a query
    string, a basic-auth header).
    """
    if not value:
        return
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             base64.b64encode(value.encode()).decode().rstrip("=")}
    global _snapshot
    with _secrets_lock:
        for form in forms:
            if len(form) >= _SHORT:
                _secrets.add(form)
            elif form not in _short:
                _short[form] = re.compile(r"(?<![A-Za-z0-9_-])" + re.escape(form)
                                          + r"(?![A-Za-z0-9_-])")
        _snapshot = (tuple(sorted(_secrets, key=len, reverse=True)), tuple(_short.values()))


# A run this long of a secret's start counts as the secret: an excerpt cut
# through a key must not keep the part before the cut.
_FRAGMENT = 12


def redact(text: str) -> str:
    """Return *text* with every registered secret (or a cut-off start of one) redacted."""
    secrets, short = _snapshot
    if not secrets and not short:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
        if len(secret) > _FRAGMENT:
            text = _redact_fragments(text, secret)
    for pattern in short:
        text = pattern.sub(_REDACTED, text)
    return text


def excerpt(text: str | bytes, limit: int) -> str:
    """The first *limit* characters of *text*, redacted before the cut (a cut never
    splits a key, so no start of one survives)."""
    whole = redact(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
    return whole if len(whole) <= limit else whole[:limit] + "..."


def _redact_fragments(text: str, secret: str) -> str:
    head = secret[:_FRAGMENT]
    start = text.find(head)
    while start != -1:
        end = start + _FRAGMENT
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = text[:start] + _REDACTED + text[end:]
        start = text.find(head, start + len(_REDACTED))
    return text


class EngineError(Exception):
    """Base class of every error the library raises.

    Attributes:
        kind: one of :data:`KINDS`, the provider-neutral category.
        message: human-readable text (the provider's own message when it gave one).
        status: the HTTP status, or ``None`` when no response was received.
        provider: the manifest id involved, or ``None``.
        retryable: whether retrying the same request may succeed.
        retry_after: seconds the provider asked us to wait, or ``None``.
        code: the provider's error code or type, when it gave one.
        partial: for ``incomplete_stream``, the response accumulated so far.
    """

    kind_of_class: str | None = None  # the kind every instance of a kind's class has

    def __new__(cls, kind: Any = None, *args: Any, **kwargs: Any) -> EngineError:
        # EngineError(kind, ...) builds the class of that kind; a subclass builds itself.
        target = ERROR_CLASSES.get(kind, cls) if cls is EngineError else cls
        return super().__new__(target)

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        partial: Any = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        if self.kind_of_class is not None and kind != self.kind_of_class:
            raise ValueError(f"{type(self).__name__} has kind {self.kind_of_class!r}, "
                             f"not {kind!r}")
        self.kind: ErrorKind = kind
        self.message = redact(message)
        self.status = status
        self.provider = provider
        self.retryable = kind in DEFAULT_RETRYABLE if retryable is None else retryable
        self.retry_after = retry_after
        # True/False when the provider forced the retry decision (a header), else None.
        self.retry_forced: bool | None = None
        self.code = redact(code) if code is not None else None
        self.partial = partial
        self.attempts = 1
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments defeat Exception's default reduce (it replays .args):
        # rebuild from the attributes, so pickle (multiprocessing, task queues) and copy work.
        return (_rebuild, (type(self), dict(self.__dict__)))

    @property
    def provider_message(self) -> str:
        """The provider's own message (same as :attr:`message`)."""
        return self.message

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.kind}{status}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, status={self.status!r}, "
            f"provider={self.provider!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r}, message={self.message!r})"
        )


def _rebuild(cls: type[EngineError], state: dict[str, Any]) -> EngineError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class InvalidRequestError(EngineError):
    """The request cannot succeed as it is (never retried)."""

    kind_of_class = "invalid_request"


class AuthenticationError(EngineError):
    """The key is missing, wrong or expired."""

    kind_of_class = "authentication"


class PermissionDeniedError(EngineError):
    """The key may not do this (model, region, feature)."""

    kind_of_class = "permission_denied"


class NotFoundError(EngineError):
    """No such model or endpoint."""

    kind_of_class = "not_found"


class ContextLengthExceededError(EngineError):
    """The prompt does not fit the model's context window."""

    kind_of_class = "context_length_exceeded"


class RateLimitError(EngineError):
    """Too many requests or tokens for now; retried by default."""

    kind_of_class = "rate_limited"


class QuotaExhaustedError(EngineError):
    """Credit or quota is used up; waiting does not help."""

    kind_of_class = "quota_exhausted"


class ContentFilteredError(EngineError):
    """The provider's safety system refused the request."""

    kind_of_class = "content_filtered"


class OverloadedError(EngineError):
    """The provider is overloaded; retried by default."""

    kind_of_class = "overloaded"


class ServerError(EngineError):
    """The provider failed (5xx); retried by default."""

    kind_of_class = "server_error"


class RequestTimeoutError(EngineError):
    """A time limit was hit (the message names which)."""

    kind_of_class = "timeout"


class APIConnectionError(EngineError):
    """No HTTP answer: refused, reset, DNS, TLS."""

    kind_of_class = "connection"


class IncompleteStreamError(EngineError):
    """The stream ended before its end; ``partial`` has what arrived."""

    kind_of_class = "incomplete_stream"


class MalformedResponseError(EngineError):
    """The answer is not what the protocol says it is."""

    kind_of_class = "malformed_response"


class RequestCancelledError(EngineError):
    """The request was cancelled."""

    kind_of_class = "cancelled"


ERROR_CLASSES: dict[str, type[EngineError]] = {
    str(cls.kind_of_class): cls for cls in (
        InvalidRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
        ContextLengthExceededError, RateLimitError, QuotaExhaustedError, ContentFilteredError,
        OverloadedError, ServerError, RequestTimeoutError, APIConnectionError,
        IncompleteStreamError, MalformedResponseError, RequestCancelledError)
}


class ManifestError(InvalidRequestError):
    """A manifest could not be found, loaded, validated or rendered.

    ``problems`` lists every problem as ``file:line: key.path: message``.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None,
                 provider: str | None = None, key: tuple[str | int, ...] = (),
                 detail: str | None = None) -> None:
        super().__init__("invalid_request", message, provider=provider, retryable=False)
        self.problems: list[str] = list(problems or [])
        self.key = key  # where in the manifest the problem sits, when known
        self.detail = detail if detail is not None else message  # the message without `key`
