"""URL parts a provider takes only as bytes: what to download, how, and what came back.

Sans-I/O. A manifest that takes a part kind as ``fetch`` (``capabilities.parts``)
wants bytes where the caller gave a URL; the plan (:mod:`engine.protocol.plan`)
asks :func:`downloads` which URLs that means, yields one ``Fetch`` step per
hop built by :func:`fetch_request`, and hands each answer to :func:`read`,
which gives the next URL (a redirect) or the downloaded :class:`~engine.parts.Part`.
:func:`inline` then puts the bytes in place of the URL, per manifest.

Invariants:

- a URL is downloaded only for a manifest that takes its kind as ``fetch``,
  once per call however many models of a fallback chain want it;
- no credentials go with a download: no provider headers or auth, and a
  redirect to another origin drops any user:password of the URL;
- redirects are followed up to :data:`MAX_REDIRECTS` hops, http(s) only;
- a body over the smallest limit among the manifests that want it
  (``part_limits.<kind>.max_bytes``, else :data:`~engine.parts.MAX_PART_BYTES`)
  is an ``invalid_request`` error, and so is an answer that is not 200;
- the media type is the answer's ``Content-Type`` when it is one of the
  kind's, else what the bytes' signature says, else the type the part
  declared; none of those is an ``invalid_request`` error;
- messages show a URL without its query and fragment (signed URLs keep their
  secret there) and never the bytes.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import EngineError
from ..manifest.model import Manifest
from ..parts import MAX_PART_BYTES, MEDIA_TYPES, Part
from ..types import ChatRequest, Message
from .render import PreparedRequest

if TYPE_CHECKING:
    from .plan import RawResponse

__all__ = ["MAX_REDIRECTS", "Download", "downloads", "fetch_request", "inline", "read", "shown"]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Leading bytes of the formats the engine can recognise without a Content-Type.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"%PDF-", 0, "application/pdf"),
    (b"WAVE", 8, "audio/wav"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
)


@dataclass(frozen=True, slots=True)
class Download:
    """One URL to download, for a part of *kind*, of at most *limit* bytes."""

    url: str
    kind: str
    limit: int
    declared: str | None = None  # the media type the part gave, if any
    name: str | None = None


def _fetches(manifest: Manifest, kind: str) -> bool:
    return "fetch" in manifest.part_sources.get(kind, ())


def _limit(manifest: Manifest, kind: str) -> int:
    spec = manifest.part_limits.get(kind)
    if spec is None or spec.max_bytes is None:
        return MAX_PART_BYTES
    return min(spec.max_bytes, MAX_PART_BYTES)


def downloads(manifests: Iterable[Manifest], request: ChatRequest) -> dict[str, Download]:
    """The URL parts some manifest wants as bytes, each with the smallest limit wanted."""
    wanted: dict[str, Download] = {}
    chosen = list(manifests)
    for message in request.messages:
        for part in message.parts:
            if part.url is None or part.type == "text":
                continue
            limits = [_limit(m, part.type) for m in chosen if _fetches(m, part.type)]
            if not limits:
                continue
            _check_scheme(part)
            known = wanted.get(part.url)
            limit = min(limits) if known is None else min(known.limit, *limits)
            wanted[part.url] = Download(part.url, part.type, limit, part.media_type, part.name)
    return wanted


def _check_scheme(part: Part) -> None:
    assert part.url is not None
    scheme = urllib.parse.urlsplit(part.url).scheme
    if scheme not in ("http", "https"):
        raise _invalid(f"cannot download the {part.type} part at {shown(part.url)}: only "
                       f"http(s) URLs can be downloaded, and the provider takes no URLs")


def shown(url: str) -> str:
    """*url* without user:password, query and fragment, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def fetch_request(url: str, kind: str) -> PreparedRequest:
    """The GET of one hop: no credentials, no provider headers."""
    accept = "application/pdf, text/*;q=0.9" if kind == "document" else f"{kind}/*"
    return PreparedRequest("GET", url, (("accept", accept),), b"", None)


def read(job: Download, url: str, outcome: RawResponse | EngineError) -> str | Part:
    """The next URL to fetch (a redirect), or the downloaded part; raise on failure."""
    what = f"the {job.kind} part at {shown(job.url)}"
    if isinstance(outcome, EngineError):
        raise EngineError(outcome.kind, f"downloading {what} failed: {outcome.message}",
                          retryable=False) from outcome
    if outcome.status in _REDIRECTS:
        return _next_hop(url, outcome.headers.get("location"), what)
    if outcome.status != 200:
        raise _invalid(f"downloading {what} failed: HTTP {outcome.status}")
    if len(outcome.body) > job.limit:
        raise _invalid(f"{what} is larger than {job.limit} bytes, the most the provider "
                       f"takes; send a smaller one")
    media_type = _media_type(job, outcome)
    try:
        return Part._media(job.kind, None, outcome.body, media_type, job.name, False)  # type: ignore[arg-type]
    except EngineError as error:
        raise _invalid(f"{what} cannot be sent: {error.message}") from None


def _next_hop(url: str, location: str | None, what: str) -> str:
    if not location:
        raise _invalid(f"downloading {what} failed: a redirect without a Location")
    target = urllib.parse.urljoin(url, location.strip())
    old, new = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
    if new.scheme not in ("http", "https"):
        raise _invalid(f"downloading {what} failed: redirected to a {new.scheme or 'relative'}"
                       f" URL")
    moved = (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port)
    if moved and (new.username is not None or new.password is not None):
        target = urllib.parse.urlunsplit(new._replace(netloc=new.netloc.rpartition("@")[2]))
    return target


def _media_type(job: Download, raw: RawResponse) -> str | None:
    allowed = MEDIA_TYPES[job.kind]
    header = raw.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if header in allowed:
        return header
    for signature, offset, media_type in _SIGNATURES:
        if raw.body[offset:offset + len(signature)] == signature and media_type in allowed:
            return media_type
    if job.declared is not None:
        return job.declared
    raise _invalid(f"the {job.kind} part at {shown(job.url)} came back as "
                   f"{header or 'no Content-Type'}, not one of the {job.kind} media types "
                   f"({', '.join(sorted(allowed))}); give media_type=")


def inline(request: ChatRequest, fetched: Mapping[str, Part], manifest: Manifest) -> ChatRequest:
    """*request* with the URL parts *manifest* takes as ``fetch`` replaced by their bytes."""
    if not fetched:
        return request
    messages = tuple(_inlined(m, fetched, manifest) for m in request.messages)
    if all(new is old for new, old in zip(messages, request.messages, strict=True)):
        return request
    return dataclasses.replace(request, messages=messages)


def _inlined(message: Message, fetched: Mapping[str, Part], manifest: Manifest) -> Message:
    parts = tuple(_swap(p, fetched, manifest) for p in message.parts)
    if all(new is old for new, old in zip(parts, message.parts, strict=True)):
        return message
    return dataclasses.replace(message, parts=parts)


def _swap(part: Part, fetched: Mapping[str, Part], manifest: Manifest) -> Part:
    got = fetched.get(part.url) if part.url is not None else None
    if got is None or got.type != part.type or not _fetches(manifest, part.type):
        return part
    return dataclasses.replace(got, cache=part.cache, name=part.name)


def _invalid(message: str) -> EngineError:
    return EngineError("invalid_request", message, retryable=False)
