"""Bounded HTTP content decoding (``Content-Encoding``). Sans-I/O.

A :class:`BodyDecoder` turns the raw bytes of a body, fed in any pieces, into
decoded pieces of at most :data:`PIECE` bytes each, so a compression bomb
never makes the client hold more than one piece beyond what the reader keeps:
the reader (a whole-body read with its size limit, a stream framer with its
frame limit) stops at its own limit. ``gzip``, ``deflate`` and, when the
``brotli`` package (1.2 or newer) is installed, ``br`` are decoded; one coding
at most (``identity`` aside): stacked codings are refused, as is any other.
Every failure is an ``EngineError`` of kind ``malformed_response``.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Iterator
from typing import Any, Protocol

from ..errors import EngineError

__all__ = ["PIECE", "BodyDecoder", "accept_encoding"]

PIECE = 64 * 1024


class _Codec(Protocol):
    def run(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


def _malformed(message: str) -> EngineError:
    return EngineError("malformed_response", message, retryable=False)


class _Identity:
    def run(self, data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), PIECE):
            yield data[start:start + PIECE]

    def finish(self) -> Iterator[bytes]:
        return iter(())


class _Zlib:
    """gzip (``wbits`` 16+15) or deflate (zlib-wrapped, or raw as some servers send)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._raw_fallback = name == "deflate"
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)

    def run(self, data: bytes) -> Iterator[bytes]:
        pending = data
        while pending:
            try:
                piece = self._z.decompress(pending, PIECE)
            except zlib.error as exc:
                if not self._raw_fallback:
                    raise _malformed(f"cannot decode the {self.name} body: {exc}") from None
                self._raw_fallback = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._raw_fallback = False
            pending = self._z.unconsumed_tail
            if piece:
                yield piece
            if self._z.eof:
                return

    def finish(self) -> Iterator[bytes]:
        while True:
            try:
                piece = self._z.flush(PIECE) if not self._z.eof else b""
            except zlib.error as exc:
                raise _malformed(f"cannot decode the {self.name} body: {exc}") from None
            if not piece:
                return
            yield piece


class _Brotli:
    def __init__(self, module: Any) -> None:
        self._module = module
        self._d = module.Decompressor()

    def run(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._d.process(data, output_buffer_limit=PIECE)
            while True:
                if piece:
                    yield piece
                if self._d.can_accept_more_data() or self._d.is_finished():
                    return
                piece = self._d.process(b"", output_buffer_limit=PIECE)
        except self._module.error as exc:
            raise _malformed(f"cannot decode the br body: {exc}") from None

    def finish(self) -> Iterator[bytes]:
        return iter(())


def _brotli() -> Any:
    """The brotli module when it can decode in bounded pieces (1.2+), else None."""
    try:
        module = importlib.import_module("brotli")
    except ImportError:
        return None
    try:
        module.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:  # older releases decode a whole input at once: unbounded
        return None
    return module


_BROTLI: list[Any] = []


def _brotli_cached() -> Any:
    if not _BROTLI:
        _BROTLI.append(_brotli())
    return _BROTLI[0]


def accept_encoding() -> str:
    """The ``Accept-Encoding`` this client can decode within its limits."""
    return "gzip, deflate, br" if _brotli_cached() is not None else "gzip, deflate"


def _codec(header: str | None) -> _Codec:
    names = [n.strip().lower() for n in (header or "").split(",")]
    names = [n for n in names if n and n != "identity"]
    if not names:
        return _Identity()
    if len(names) > 1:
        raise _malformed(f"stacked content codings are refused: {header!r}")
    name = names[0]
    if name in ("gzip", "x-gzip"):
        return _Zlib("gzip")
    if name == "deflate":
        return _Zlib("deflate")
    if name == "br" and _brotli_cached() is not None:
        return _Brotli(_brotli_cached())
    raise _malformed(f"unsupported content coding {name!r} (this client decodes "
                     f"{accept_encoding()})")


class BodyDecoder:
    """Decode one body: ``feed(raw)`` and ``finish()`` yield pieces of at most PIECE bytes."""

    def __init__(self, content_encoding: str | None) -> None:
        self._codec = _codec(content_encoding)
        self.identity = isinstance(self._codec, _Identity)

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._codec.run(data)

    def finish(self) -> Iterator[bytes]:
        return self._codec.finish()
