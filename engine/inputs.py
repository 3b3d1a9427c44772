"""The one validation layer for values a user hands the library. Pure.

Every public entry point (the chat builder's methods, ``create``) passes its
arguments through these checks before storing them, so a wrong value fails at
the call that got it, as an ``invalid_request``
:class:`~engine.errors.EngineError` that names the parameter, the type and
value received (never a secret's value) and what is accepted. Nothing here
knows a provider.
"""

from __future__ import annotations

import difflib
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import EngineError

__all__ = [
    "MAX_MODEL_ID",
    "api_key",
    "api_key_problem",
    "base_url",
    "choice",
    "did_you_mean",
    "got",
    "header_map",
    "integer",
    "json_object",
    "model_ids",
    "number",
    "per_model",
    "settings_map",
    "stop_list",
    "text",
]

MAX_MODEL_ID = 512
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def invalid(message: str) -> EngineError:
    return EngineError("invalid_request", message, retryable=False)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def got(value: Any) -> str:
    return f"got {type(value).__name__} {_shown(value)}"


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name} must be a str, {got(value)}")
    return value


def number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """A finite int or float within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{name} must be a number, {got(value)}")
    if not math.isfinite(value):
        raise invalid(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an int, {got(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise invalid(f"{name} must be {bounds}, got {value!r}")
    return value


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""``."""
    near = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    options = sorted(allowed)
    if isinstance(value, str) and value in options:
        return value
    hint = did_you_mean(value, options) if isinstance(value, str) else ""
    raise invalid(f"{name} must be one of {', '.join(map(repr, options))}, "
                  f"{got(value)}{hint}")


def stop_list(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
        raise invalid(f"stop must be a non-empty str or a list of them, {got(value)}")
    return list(stops)


def json_object(name: str, value: Any) -> dict[str, Any]:
    """A mapping with str keys (its values are checked when the body is rendered)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise invalid(f"{name} must be a mapping with str keys, {got(value)}")
    return dict(value)


def header_map(value: Any) -> dict[str, str]:
    """Request headers: token names, printable values without line breaks."""
    if not isinstance(value, Mapping):
        raise invalid(f"headers must be a mapping of str to str, {got(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _HEADER_NAME.fullmatch(key):
            raise invalid(f"header name {_shown(key)} is not a valid HTTP header name")
        if not isinstance(item, str) or _CONTROL.search(item):
            raise invalid(f"header {key!r} must have a str value without control characters "
                          f"or line breaks, {got(item)}")
        out[key] = item
    return out


def api_key_problem(key: str) -> str | None:
    """What makes *key* unusable in an HTTP header, or None."""
    for char in key:
        if char in "\r\n":
            return "a line break (was it read from a file with its trailing newline?)"
        if char.isspace():
            return "whitespace"
        if _CONTROL.match(char):
            return "a control character"
        if not char.isascii():
            return "a non-ASCII character"
    return None


def api_key(value: Any, where: str = "api_key") -> str | None:
    """A key sendable in an HTTP header; the message never shows the key itself."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{where} must be a str, got {type(value).__name__}")
    problem = api_key_problem(value)
    if problem is not None:
        raise invalid(f"the API key ({where}) contains {problem}; HTTP headers cannot "
                      f"carry it. Strip it before passing it")
    return value


def base_url(value: Any, where: str = "base_url") -> str | None:
    """An absolute http(s) URL without credentials; checked before anything is sent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{where} must be a str, {got(value)}")
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        raise invalid(f"{where} contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"{where} is not a valid URL ({exc}): {_shown(value)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"{where} must be an absolute http:// or https:// URL, "
                      f"got {_shown(value)}")
    if parts.username is not None or parts.password is not None:
        raise invalid(f"{where} carries credentials (user:password@); they would replace "
                      f"the provider's authentication. Pass the key as api_key instead")
    del port  # parsed only to reject a port out of range
    return value


def settings_map(value: Any) -> dict[str, str]:
    """``settings=``: a mapping of setting name to its text (each value checked later,
    against what the manifest declares)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(f"settings must be a mapping of setting name to str, {got(value)}")
    for name in value:
        if not isinstance(name, str):
            raise invalid(f"settings keys must be str, got {_shown(name)}")
    return dict(value)


def per_model(name: str, value: Any, check: Any) -> str | Mapping[str, str] | None:
    """A setting for every model, or a mapping of provider or model id to its value."""
    if value is None or isinstance(value, str):
        return check(value, name)  # type: ignore[no-any-return]
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise invalid(f"{name} keys must be provider or model ids (str), "
                              f"got {type(key).__name__}")
            checked = check(item, f"{name}[{key!r}]")
            if checked is not None:
                out[key] = checked
        return out
    raise invalid(f"{name} must be a str, a mapping of provider or model id to str, or "
                  f"None, got {type(value).__name__}")


def model_ids(value: Any) -> list[str]:
    """``"provider/model"`` or a non-empty sequence of them (a fallback chain)."""
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, Sequence) or isinstance(ids, (bytes, bytearray)) or not ids:
        raise invalid(f"model must be 'provider/model' or a non-empty list of them, "
                      f"{got(value)}")
    for item in ids:
        if not isinstance(item, str):
            raise invalid(f"model ids must be str, {got(item)}")
        if len(item) > MAX_MODEL_ID:
            raise invalid(f"model id is {len(item)} characters long; at most {MAX_MODEL_ID}")
        if _CONTROL.search(item) or any(c.isspace() for c in item):
            raise invalid(f"model id {_shown(item)} contains whitespace or control characters")
    return list(ids)


def embed_inputs(value: Any) -> tuple[str, ...]:
    """One text, or a list of texts (at least one; each a str)."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise invalid(f"embed takes a str or a list of str, {got(value)}")
    texts = tuple(value)
    if not texts:
        raise invalid("embed needs at least one input text, got an empty list")
    for index, item in enumerate(texts):
        if not isinstance(item, str):
            raise invalid(f"input {index} must be a str, {got(item)}")
    return texts
