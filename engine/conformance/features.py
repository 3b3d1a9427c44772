"""The request features beyond text, what fixtures exercise them, and who offers them.

A fixture exercises a feature when its request uses it: an image, document or
audio part; a JSON Schema answer (unstreamed or streamed); JSON mode; a
reasoning control; thinking sent back on an assistant turn (``replay``: the
provider's own blocks, or a tool-call turn's thinking text); a cache mark.
:func:`features_of` reads that from the request, so a fixture counts wherever
it is filed and whatever it is named.

:func:`offer` says how a manifest offers a feature, over its own capabilities
and every override's: ``native``, ``emulated`` (a JSON answer through a forced
tool call), ``automatic`` (caching the provider does by itself), ``none``
(declared absent: the suite checks the refusal) or ``n/a`` (thinking replay
for a provider whose answers keep no blocks of their own; a fixture may still
show its templates send the thinking text back).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from ..manifest.model import Manifest
from .fixture import Fixture

__all__ = ["FEATURES", "REFUSAL_MODEL", "features_of", "offer", "refusable"]

FEATURES = ("image", "document", "audio", "structured", "structured_stream", "json",
            "reasoning", "replay", "cache")
PART_FEATURES = ("image", "document", "audio")
# The model a refusal case asks for: no override's pattern names it, so the
# manifest's own capabilities decide.
REFUSAL_MODEL = "any-model"


def features_of(fixture: Fixture) -> frozenset[str]:
    """The features *fixture*'s request exercises."""
    if fixture.operation != "chat":
        return frozenset()
    request = fixture.request
    found: set[str] = set()
    messages = request.get("messages") or []
    for message in messages:
        found.update(_message_features(message))
    fmt = request.get("response_format")
    if fmt is not None:
        found.add("json" if fmt.get("json") else
                  "structured_stream" if request.get("stream") else "structured")
    if request.get("reasoning"):
        found.add("reasoning")
    if request.get("cache_tools"):
        found.add("cache")
    return frozenset(found)


def _message_features(message: dict[str, Any]) -> Iterator[str]:
    # thinking sent back: the provider's own blocks, or a tool-call turn's thinking text
    # (the providers whose thinking modes take the text back)
    if message.get("replay") or (message.get("thinking") is not None
                                 and message.get("tool_calls")):
        yield "replay"
    if message.get("cache"):
        yield "cache"
    content = message.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict):
            if part["type"] in PART_FEATURES:
                yield part["type"]
            if part.get("cache"):
                yield "cache"


def offer(manifest: Manifest, feature: str) -> str:
    """How *manifest* offers *feature* to some model of it (see the module docstring)."""
    if manifest.chat is None:
        return "none"
    ranked = [_offer_one(view, feature) for view in _views(manifest)]
    for answer in ("native", "emulated", "automatic", "n/a"):
        if answer in ranked:
            return answer
    return "none"


def refusable(manifest: Manifest, feature: str) -> bool:
    """Whether a request with *feature* to :data:`REFUSAL_MODEL` must be refused."""
    if manifest.chat is None or feature == "replay":
        return False
    return _offer_one(manifest.for_model(REFUSAL_MODEL), feature) == "none"


def _views(manifest: Manifest) -> Iterator[Manifest]:
    """The manifest with its own capabilities, then with each override's."""
    assert manifest.chat is not None
    yield manifest
    for variant in manifest.chat.variants:
        if variant.capabilities is not None:
            yield dataclasses.replace(manifest, **variant.capabilities)


def _offer_one(view: Manifest, feature: str) -> str:
    if feature in PART_FEATURES:
        return "native" if view.part_sources.get(feature) else "none"
    if feature in ("structured", "structured_stream", "json"):
        wanted = "json_object" if feature == "json" else "json_schema"
        if feature == "structured_stream" and not view.stream:
            return "none"
        if wanted in view.response_formats:
            return "native"
        return "emulated" if view.response_format_fallback is not None else "none"
    if feature == "reasoning":
        return "native" if view.reasoning_controls else "none"
    if feature == "cache":
        return {"marks": "native", "automatic": "automatic"}.get(view.prompt_cache, "none")
    return "native" if _keeps_replay(view) else "n/a"


def _keeps_replay(view: Manifest) -> bool:
    chat = view.chat
    if chat is None:
        return False
    if chat.response.replay is not None:
        return True
    return chat.stream is not None and any(r.replay is not None for r in chat.stream.events)
