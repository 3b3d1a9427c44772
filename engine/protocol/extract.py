"""Map the decoded answers of ``embed``, ``list_models`` and ``count_tokens``. Pure.

The chat answer is mapped by :mod:`.accumulate`; these are the other
operations' mappers, fed decoded JSON in tests. Each reads its answer with
the manifest's compiled expressions and refuses, as ``malformed_response``,
an answer that breaks its contract: a vector count that differs from the
inputs, vectors of differing lengths, indexes that are not a permutation of
the inputs, an entry without an id, a token count that is not a count. A
short or reordered list is never passed on.

A vector is a list of numbers or base64 of little-endian float32 (what
``encoding_format: base64`` returns); the stdlib :mod:`array` decodes it
(numpy would return the same Python floats no faster, as the answer is a
``list[list[float]]``).
"""

from __future__ import annotations

import array
import base64
import binascii
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import EngineError
from ..manifest.model import EmbedSpec, ListModelsSpec, Manifest
from ..manifest.paths import Path, PathError
from ..types import ModelInfo

__all__ = ["EmbedPage", "decode_vector", "embed_answer", "model_page", "token_count"]

EmbedPage = tuple[list[list[float]], int | None, int | None, str | None]


def _malformed(provider: str, message: str) -> EngineError:
    return EngineError("malformed_response", message, provider=provider, retryable=False)


def _search(path: Path | None, data: Any, provider: str) -> Any:
    if path is None:
        return None
    try:
        return path.search(data)
    except PathError as exc:
        raise _malformed(provider, f"cannot read the answer: {exc}") from None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def decode_vector(value: Any, provider: str) -> list[float]:
    """One vector: a list of numbers, or base64 of little-endian float32."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed(provider, "a base64 vector is not base64") from None
        if len(raw) % 4:
            raise _malformed(provider, f"a base64 vector has {len(raw)} bytes, not a "
                             f"whole number of float32 values")
        floats = array.array("f")
        floats.frombytes(raw)
        if sys.byteorder != "little":  # pragma: no cover  # the wire is little-endian
            floats.byteswap()
        return floats.tolist()
    if isinstance(value, list):
        try:
            out = [float(x) for x in value if not isinstance(x, (bool, str))]
        except (TypeError, ValueError):
            out = []
        if len(out) == len(value) and out:
            return out
    raise _malformed(provider, f"a vector is neither numbers nor base64: "
                     f"{type(value).__name__}")


def embed_answer(spec: EmbedSpec, data: Any, expected: int, provider: str) -> EmbedPage:
    """(vectors in input order, prompt tokens, total tokens, model) of one answer."""
    found = _search(spec.vectors, data, provider)
    if not isinstance(found, list):
        raise _malformed(provider, "the answer holds no list of vectors")
    if len(found) != expected:
        raise _malformed(provider, f"the answer holds {len(found)} vector(s) for "
                         f"{expected} input(s)")
    vectors = [decode_vector(v, provider) for v in found]
    if spec.index is not None:
        vectors = _in_order(vectors, _search(spec.index, data, provider), provider)
    if len({len(v) for v in vectors}) > 1:
        raise _malformed(provider, "the answer's vectors differ in length")
    prompt = _count(_search(spec.usage.get("prompt_tokens"), data, provider))
    total = _count(_search(spec.usage.get("total_tokens"), data, provider))
    model = _search(spec.model, data, provider)
    return vectors, prompt, total, model if isinstance(model, str) and model else None


def _in_order(vectors: list[list[float]], indexes: Any, provider: str) -> list[list[float]]:
    if not isinstance(indexes, list) or sorted(
            i if isinstance(i, int) and not isinstance(i, bool) else -1
            for i in indexes) != list(range(len(vectors))):
        raise _malformed(provider, f"the answer's vector indexes {indexes!r:.80} are not "
                         f"the positions 0..{len(vectors) - 1}")
    ordered: list[list[float]] = [[] for _ in vectors]
    for position, vector in zip(indexes, vectors, strict=True):
        ordered[position] = vector
    return ordered


def model_page(spec: ListModelsSpec, manifest: Manifest, data: Any
               ) -> tuple[list[ModelInfo], str | None]:
    """(the models of one page, merged with the catalogue; the next page's cursor)."""
    provider = manifest.id
    entries = _search(spec.models, data, provider)
    if not isinstance(entries, list):
        raise _malformed(provider, "the model list holds no list of models")
    models = [_model(spec, manifest, entry) for entry in entries]
    return models, _cursor(spec, data, provider)


def _model(spec: ListModelsSpec, manifest: Manifest, entry: Any) -> ModelInfo:
    provider = manifest.id
    ident = _search(spec.id, entry, provider)
    if not isinstance(ident, str) or not ident:
        raise _malformed(provider, f"a listed model has no id: {entry!r:.120}")
    known: Mapping[str, Any] = manifest.models.get(ident) or {}
    if spec.capabilities:
        capabilities = tuple(name for name, path in spec.capabilities.items()
                             if _truthy(_search(path, entry, provider)))
    else:
        capabilities = tuple(known.get("capabilities") or ())
    window = _count(_search(spec.context_window, entry, provider))
    output = _count(_search(spec.max_output, entry, provider))
    return ModelInfo(
        id=ident,
        context_window=window or known.get("context_window"),
        max_output=output or known.get("max_output"),
        capabilities=capabilities,
        raw=entry,
        provider=provider,
        in_catalogue=ident in manifest.models,
    )


def _truthy(value: Any) -> bool:
    return value not in (None, False, "", [], {})


def _cursor(spec: ListModelsSpec, data: Any, provider: str) -> str | None:
    if spec.next is None:
        return None
    if spec.more is not None and not _truthy(_search(spec.more, data, provider)):
        return None
    cursor = _search(spec.next, data, provider)
    if isinstance(cursor, bool) or not isinstance(cursor, (str, int)) or cursor == "":
        return None
    return str(cursor)


def token_count(path: Path, data: Any, provider: str) -> int:
    """The count the provider's token counter answered."""
    count = _count(_search(path, data, provider))
    if count is None:
        raise _malformed(provider, "the token counter's answer holds no token count")
    return count
