"""Turn a provider's error (HTTP status, headers, body) into an EngineError. Pure.

The manifest's ``errors`` section says where the message, code and type sit
in the decoded body and gives ordered rules (first match wins; all of a
rule's conditions must hold). When no rule matches, generic HTTP semantics
decide (:data:`STATUS_KINDS`). Retry hints are read from the sources the
manifest lists, in order. A rule may also match response headers, and its
``retry`` outcome (``always`` / ``never``) is the provider's own instruction,
which overrides the policy's retryable kinds. Each outcome (kind, retryable,
retry) is decided by the first matching rule that gives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import DEFAULT_RETRYABLE, EngineError, ErrorKind, excerpt
from ..manifest.model import ErrorRule, ErrorSpec, Manifest
from ..manifest.paths import Path, PathError
from ..retry import parse_retry_value

__all__ = ["STATUS_KINDS", "build_error", "carries_error", "classify", "decode_json",
           "kind_for_status"]

# Generic HTTP meaning of a status; a manifest rule always wins over this.
STATUS_KINDS: Mapping[int, ErrorKind] = {
    400: "invalid_request",
    401: "authentication",
    402: "quota_exhausted",
    403: "permission_denied",
    404: "not_found",
    408: "timeout",
    409: "invalid_request",
    413: "invalid_request",
    422: "invalid_request",
    429: "rate_limited",
    499: "cancelled",
    500: "server_error",
    502: "server_error",
    503: "overloaded",
    504: "timeout",
}

_EXCERPT = 200


def kind_for_status(status: int | None) -> ErrorKind:
    if status is None:
        return "server_error"
    if status in STATUS_KINDS:
        return STATUS_KINDS[status]
    if 400 <= status < 500:
        return "invalid_request"
    return "server_error"


def decode_json(body: bytes) -> Any:
    """Decode a JSON body, or return None when it is not JSON (e.g. an HTML proxy page)."""
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _search(path: Path | None, data: Any) -> Any:
    if path is None or data is None:
        return None
    try:
        return path.search(data)
    except PathError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _rule_matches(rule: ErrorRule, status: int | None, code: str | None, etype: str | None,
                  message: str, headers: Mapping[str, str]) -> bool:
    if rule.status is not None and status not in rule.status:
        return False
    if rule.codes is not None and code not in rule.codes:
        return False
    if rule.types is not None and etype not in rule.types:
        return False
    for name, pattern in rule.headers:
        value = headers.get(name)
        if value is None or not pattern.search(value):
            return False
    return rule.message is None or bool(rule.message.search(message))


def _retry_after(spec: ErrorSpec, headers: Mapping[str, str], data: Any,
                 message: str) -> float | None:
    for hint in spec.retry_after:
        value: Any = None
        if hint.header is not None:
            value = headers.get(hint.header.lower())
        elif hint.path is not None:
            value = _search(hint.path, data)
        elif hint.message is not None:
            match = hint.message.search(message)
            value = (match.group(1) if match.groups() else match.group(0)) if match else None
        seconds = parse_retry_value(value, hint.unit)
        if seconds is not None:
            return seconds
    return None


def carries_error(manifest: Manifest, body: bytes) -> bool:
    """Whether *body* is JSON holding an error message where the manifest's errors say."""
    return _search(manifest.errors.message, decode_json(body)) is not None


def classify(manifest: Manifest, status: int | None, headers: Mapping[str, str],
             body: bytes | None = None, data: Any = None,
             spec: ErrorSpec | None = None) -> EngineError:
    """Build the EngineError for an error response.

    *headers* must have lower-case names. Pass *data* when the payload is
    already decoded; otherwise *body* is decoded here. *spec* is an
    operation's errors (default: the manifest's).
    """
    spec = spec or manifest.errors
    if data is None and body is not None:
        data = decode_json(body)
    message = _text(_search(spec.message, data))
    if message is None:
        message = _fallback_message(status, body, data)
    return build_error(manifest, status, headers, message, _text(_search(spec.code, data)),
                       _text(_search(spec.type, data)), data, spec)


def build_error(manifest: Manifest, status: int | None, headers: Mapping[str, str],
                message: str, code: str | None, etype: str | None, data: Any,
                spec: ErrorSpec | None = None) -> EngineError:
    """Apply the manifest's rules (or an operation's, *spec*) to extracted error facts."""
    spec = spec or manifest.errors
    kind: ErrorKind | None = None
    retryable: bool | None = None
    forced: bool | None = None
    for rule in spec.rules:
        if not _rule_matches(rule, status, code, etype, message, headers):
            continue
        if kind is None and rule.kind is not None:
            kind = rule.kind  # type: ignore[assignment]  # the schema allows only KINDS
            if retryable is None:
                retryable = rule.retryable
        elif retryable is None and rule.kind is None:
            retryable = rule.retryable
        if forced is None:
            forced = rule.retry
        if kind is not None and forced is not None:
            break
    kind = kind or kind_for_status(status)
    if forced is not None:
        retryable = forced
    elif retryable is None:
        retryable = kind in DEFAULT_RETRYABLE
    error = EngineError(
        kind,
        message,
        status=status,
        provider=manifest.id,
        retryable=retryable,
        retry_after=_retry_after(spec, headers, data, message),
        code=code or etype,
    )
    error.retry_forced = forced
    return error


def _fallback_message(status: int | None, body: bytes | None, data: Any) -> str:
    if isinstance(data, str):
        return data
    if body:
        # Redact the whole text before cutting it, so a cut never splits a key.
        text = excerpt(body, _EXCERPT).strip()
        return f"HTTP {status}: {text}" if status else text
    return f"HTTP {status} with an empty body" if status else "error without a message"
