"""Client settings: the values a manifest's templates read as ``settings.<name>``.

A manifest declares its settings (``settings: {resource: {env: [...],
required: true}, api_version: {default: "..."}}``); :func:`resolve` gives
each its value for one client: ``AiClient.create(settings=...)`` first, then
the first set environment variable the setting names, then its default.
A required setting without a value, a value that is not short URL-safe text
(or does not match the setting's own ``pattern``), and a name no manifest of
the client declares are ``invalid_request`` errors raised when the client is
created, before anything is sent. :func:`render_base_url` fills a base URL
written as a template over the settings, and checks what it renders to.

Settings are not secrets: they name a resource, a region, a version. They
may appear in URLs and messages; keys never do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from .. import inputs
from ..errors import EngineError
from ..manifest.model import Manifest, SettingSpec
from ..manifest.templates import render_checked

__all__ = ["MAX_SETTING_LENGTH", "SAFE_VALUE", "check_names", "render_base_url", "resolve",
           "samples"]

MAX_SETTING_LENGTH = 256
# A value without a declared pattern: letters, digits and . _ ~ : - (it may land in a
# host name or a path segment, so it can never add a "/", "@", "?" or "#").
SAFE_VALUE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~:-")


def _refuse(message: str, provider: str) -> EngineError:
    return EngineError("invalid_request", message, provider=provider, retryable=False)


def _source(spec: SettingSpec, given: Mapping[str, str]) -> tuple[str | None, str]:
    """The raw value of one setting and where it came from."""
    if spec.name in given:
        return given[spec.name], f"settings[{spec.name!r}]"
    for name in spec.env:
        value = os.environ.get(name)
        if value:
            return value, f"${name}"
    return spec.default, f"the default of setting {spec.name!r}"


def _missing(spec: SettingSpec, provider: str) -> EngineError:
    where = f"pass settings={{{spec.name!r}: ...}}"
    if spec.env:
        where += " or set " + " or ".join(f"${name}" for name in spec.env)
    about = f" ({spec.description})" if spec.description else ""
    return _refuse(f"{provider} needs the setting {spec.name!r}{about}: {where}", provider)


def _checked(spec: SettingSpec, value: Any, where: str, provider: str) -> str:
    if not isinstance(value, str):
        raise _refuse(f"setting {spec.name!r} ({where}) must be a string, not "
                      f"{type(value).__name__}", provider)
    if not value or len(value) > MAX_SETTING_LENGTH:
        raise _refuse(f"setting {spec.name!r} ({where}) must be 1 to {MAX_SETTING_LENGTH} "
                      f"characters, got {len(value)}", provider)
    if spec.pattern is not None:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value) or \
                not spec.pattern.search(value):
            raise _refuse(f"setting {spec.name!r} ({where}) is {value!r}, which does not "
                          f"match {provider}'s pattern {_shown(spec)}", provider)
    elif not set(value) <= SAFE_VALUE:
        bad = next(ch for ch in value if ch not in SAFE_VALUE)
        raise _refuse(f"setting {spec.name!r} ({where}) is {value!r}: {bad!r} is not "
                      f"allowed (letters, digits and . _ ~ : - only)", provider)
    return value


def _shown(spec: SettingSpec) -> str:
    assert spec.pattern is not None
    return repr(spec.pattern.source[5:-3])  # without the \A(?: ... )\Z added at compile


def resolve(manifest: Manifest, given: Mapping[str, str]) -> dict[str, str | None]:
    """Every declared setting of *manifest* with its value (None when unset, optional)."""
    out: dict[str, str | None] = {}
    for spec in manifest.settings.values():
        value, where = _source(spec, given)
        if value is None:
            if spec.required:
                raise _missing(spec, manifest.id)
            out[spec.name] = None
            continue
        out[spec.name] = _checked(spec, value, where, manifest.id)
    return out


def check_names(given: Mapping[str, Any], manifests: Iterable[Manifest]) -> None:
    """Refuse a setting name that no manifest of the client declares."""
    found = list(manifests)
    declared = sorted({name for m in found for name in m.settings})
    for name in given:
        if not isinstance(name, str) or name not in declared:
            ids = ", ".join(dict.fromkeys(m.id for m in found))
            known = (f"it declares: {', '.join(declared)}" if declared
                     else "it declares no settings")
            hint = inputs.did_you_mean(str(name), declared)
            raise EngineError("invalid_request", f"unknown setting {name!r} for {ids}"
                              f"{hint}; {known}", retryable=False)


def render_base_url(manifest: Manifest, settings: Mapping[str, str | None]) -> str | None:
    """The manifest's base URL with its settings filled in, checked as a URL; None when
    the base URL reads no settings (it is then ``manifest.base_url`` as written)."""
    if manifest.base_url_template is None:
        return None
    url = render_checked(manifest.base_url_template, {"settings": dict(settings)},
                         "base_url", manifest.id)
    if not isinstance(url, str):
        raise _refuse(f"{manifest.id}'s base_url rendered to {type(url).__name__}, "
                      f"not a URL", manifest.id)
    checked = inputs.base_url(url, f"{manifest.id}'s base_url")
    assert checked is not None  # a str in, a str out
    return checked


def samples(manifest: Manifest) -> dict[str, str]:
    """A value for every declared setting (its default, else its example, else
    ``sample-<name>``), for renders that need some value: the validator's dry run,
    refusal checks."""
    return {name: spec.default or spec.example or f"sample-{name}"
            for name, spec in manifest.settings.items()}
