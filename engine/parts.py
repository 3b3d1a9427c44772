"""Message parts beyond text: images, documents and audio, given by URL or as bytes.

``Part.text``, ``Part.image``, ``Part.document`` and ``Part.audio`` build the
parts of a user message (``chat.user(["What is this?", Part.image(url=...)])``).
A part is checked when it is built: one source (``url`` or ``data``), an
http(s) URL or a ``data:`` URL (decoded then: a ``data:`` URL is bytes, and
sent as bytes everywhere), a media type of its kind when bytes are given, and
at most :data:`MAX_PART_BYTES`. Bytes are base64-encoded once, on
first use, and never shown: ``repr`` gives the size and media type only.

Templates see each part as :meth:`Part.to_context`: ``{type, text, url, data_b64,
data_url, media_type, format, name, cache}``; ``format`` is the short name of the
media type (``png``, ``wav``, ``mp3``, ``pdf``) for APIs that want it; a
``text/*`` document's ``text`` is its UTF-8 text (checked when built), for APIs
that take plain-text documents as text.
Pure: no I/O.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import EngineError

__all__ = ["MAX_PART_BYTES", "MEDIA_TYPES", "Part", "PartType"]

PartType = Literal["text", "image", "document", "audio"]
MAX_PART_BYTES = 32 * 1024 * 1024
# The media types each kind accepts as bytes (a URL may point at anything the provider reads).
MEDIA_TYPES: dict[str, frozenset[str]] = {
    "image": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/heic",
                        "image/heif"}),
    "document": frozenset({"application/pdf", "text/plain", "text/markdown", "text/html",
                           "text/csv"}),
    "audio": frozenset({"audio/wav", "audio/x-wav", "audio/mpeg", "audio/mp3", "audio/aac",
                        "audio/ogg", "audio/flac", "audio/webm", "audio/aiff", "audio/mp4"}),
}
_FORMATS = {"audio/x-wav": "wav", "audio/mpeg": "mp3", "image/jpeg": "jpeg",
            "text/plain": "txt", "text/markdown": "md"}


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _invalid(message: str) -> EngineError:
    return EngineError("invalid_request", message, retryable=False)


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a message: text, or an image, document or audio clip."""

    type: PartType
    content: str | None = None  # a text part's text (templates see it as ``text``)
    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    media_type: str | None = None
    name: str | None = None
    cache: bool = False
    _b64: list[str] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def text(cls, text: str, *, cache: bool = False) -> Part:
        if not isinstance(text, str):
            raise _invalid(f"a text part needs a str, got {type(text).__name__}")
        return cls("text", content=text, cache=bool(cache))

    @classmethod
    def image(cls, *, url: str | None = None, data: bytes | None = None,
              media_type: str | None = None, cache: bool = False) -> Part:
        return cls._media("image", url, data, media_type, None, cache)

    @classmethod
    def document(cls, *, url: str | None = None, data: bytes | None = None,
                 media_type: str | None = None, name: str | None = None,
                 cache: bool = False) -> Part:
        """A document; bytes with no *media_type* (nor a data: URL's) are a PDF."""
        return cls._media("document", url, data, media_type, name, cache)

    @classmethod
    def audio(cls, *, url: str | None = None, data: bytes | None = None,
              media_type: str | None = None, cache: bool = False) -> Part:
        return cls._media("audio", url, data, media_type, None, cache)

    @classmethod
    def _media(cls, kind: PartType, url: str | None, data: bytes | None,
               media_type: str | None, name: str | None, cache: bool) -> Part:
        if (url is None) == (data is None):
            raise _invalid(f"{_a(kind)} part needs exactly one of url= or data=")
        if url is not None:
            _check_url(kind, url)
            if url.startswith("data:"):  # bytes already: a data part everywhere
                media_type, data = _from_data_url(kind, url, media_type)
                url = None
        text = None
        if data is not None:
            if kind == "document" and media_type is None:
                media_type = "application/pdf"
            data = _check_data(kind, data, media_type)
            text = _text_of(kind, data, media_type)
        if name is not None and not isinstance(name, str):
            raise _invalid(f"{_a(kind)} part's name must be a str")
        return cls(kind, content=text, url=url, data=data, media_type=media_type, name=name,
                   cache=bool(cache))

    @property
    def data_b64(self) -> str | None:
        """The bytes in base64, encoded once."""
        if self.data is None:
            return None
        if not self._b64:
            self._b64.append(base64.b64encode(self.data).decode("ascii"))
        return self._b64[0]

    @property
    def data_url(self) -> str | None:
        """A ``data:`` URL of the bytes, or the URL given."""
        if self.data is None:
            return self.url
        return f"data:{self.media_type};base64,{self.data_b64}"

    @property
    def format(self) -> str | None:
        if self.media_type is None:
            return None
        return _FORMATS.get(self.media_type, self.media_type.split("/", 1)[-1])

    def to_context(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.content, "url": self.url,
                "data_b64": self.data_b64, "data_url": self.data_url,
                "media_type": self.media_type, "format": self.format, "name": self.name,
                "cache": self.cache}

    def describe(self) -> str:
        """For logs: the kind, source and size, never the bytes."""
        if self.type == "text":
            return f"text ({len(self.content or '')} chars)"
        if self.data is not None:
            return f"{self.type} ({self.media_type}, {len(self.data)} bytes)"
        return f"{self.type} (url)"

    def __repr__(self) -> str:
        return f"Part({self.describe()})"


def _check_url(kind: str, url: Any) -> None:
    if not isinstance(url, str) or not url:
        raise _invalid(f"{_a(kind)} part's url must be a non-empty str")
    if url.startswith("data:"):
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "gs") or not parts.netloc:
        raise _invalid(f"{_a(kind)} part's url must be an absolute http(s) or gs:// URL, "
                       f"or a data: URL")


def _from_data_url(kind: str, url: str, media_type: str | None) -> tuple[str | None, bytes]:
    head, comma, payload = url[5:].partition(",")
    if not comma:
        raise _invalid(f"{_a(kind)} part's data: URL has no ',' before its data")
    params = [p.strip().lower() for p in head.split(";")]
    declared = params[0] or None
    if "base64" not in params[1:]:  # RFC 2397: percent-encoded bytes
        return media_type or declared, urllib.parse.unquote_to_bytes(payload)
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise _invalid(f"{_a(kind)} part's data: URL does not hold valid base64") from None
    return media_type or declared, data


def _text_of(kind: str, data: bytes, media_type: str | None) -> str | None:
    """A text document's text (UTF-8, checked now); None for any other part."""
    if kind != "document" or not (media_type or "").startswith("text/"):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid(f"a {media_type} document must be UTF-8: byte {error.start} "
                       f"is not") from None


def _check_data(kind: str, data: Any, media_type: str | None) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise _invalid(f"{_a(kind)} part's data must be bytes, got {type(data).__name__}")
    if not data:
        raise _invalid(f"{_a(kind)} part's data is empty")
    if len(data) > MAX_PART_BYTES:
        raise _invalid(f"{_a(kind)} part of {len(data)} bytes is over the limit of "
                       f"{MAX_PART_BYTES} bytes")
    allowed = MEDIA_TYPES[kind]
    if media_type not in allowed:
        raise _invalid(f"{_a(kind)} part given as bytes needs media_type, one of "
                       f"{', '.join(sorted(allowed))}; got {media_type!r}")
    return data
