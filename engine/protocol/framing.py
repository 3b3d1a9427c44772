"""Incremental framers: turn a response body, fed as arbitrary byte chunks, into frames.

Contract
--------
A *framer* receives the body in whatever pieces the transport delivers
(``feed(bytes) -> list[Frame]``) and is told when the body ends
(``close() -> list[Frame]``).  The frames it returns never depend on where the
body was split: feeding it whole, byte by byte or in any other chunking yields
the same list of :class:`Frame` (data, event, meta and offset).

Registered framers (:data:`FRAMERS`, built by :func:`make_framer`):

``sse``
    WHATWG ``text/event-stream``: LF / CRLF / CR line ends (also a CR and LF
    split across two chunks), comments, multi-line ``data``, ``event`` /
    ``id`` / ``retry``.  An event is dispatched on a blank line when it had a
    ``data`` field or a non-empty event name; ``close()`` also dispatches a
    pending event that lacks the final blank line.  ``offset`` is the start
    of the event's first field line.
``sse-bare-json``
    ``sse``, plus: lines outside the event-stream grammar (not a known field,
    not a comment) that jointly form one JSON document are a frame with no
    event name, dispatched as soon as they parse (or, unparsed, at the end of
    the body).  Some servers write an error this way after the stream began.
``ndjson``
    One text per LF or CRLF terminated line (a lone CR is data); blank lines
    skipped; an unterminated last line is a frame.
``json-array``
    One JSON array streamed element by element; each top-level element is a
    frame as soon as it is complete.  A top-level object (an error body) is
    one frame.  Empty body: no frames.
``eventstream``
    Binary event-stream: prelude (total length, headers length, prelude CRC32),
    typed headers, payload, message CRC32.  Both checksums are verified.
``json``
    The whole body is one frame (an empty body gives one frame ``""``).

The text framers drop a UTF-8 BOM at the very start of the body (offsets
still count it).  Framers do not parse JSON; ``Frame.data`` is the decoded
UTF-8 text of the frame.  Errors are :class:`~engine.errors.EngineError`:

* ``malformed_response`` for bytes that cannot be framed (bad UTF-8, bad
  checksum or length, garbage outside an array, a frame, line or element
  larger than ``max_frame_bytes``); the message gives the byte offset and a
  short excerpt of the offending bytes.  The size limit is checked on every
  ``feed()``, so a hostile server cannot make a framer buffer without bound.
* ``incomplete_stream`` when ``close()`` finds a half-received array or binary
  message.

Every framer works in linear time: only newly received bytes are scanned and
consumed bytes are dropped from the front of the buffer.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from types import MappingProxyType
from typing import Protocol

from ..errors import EngineError, excerpt

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAMERS",
    "EventStreamFramer",
    "Frame",
    "Framer",
    "JSONArrayFramer",
    "JSONFramer",
    "NDJSONFramer",
    "SSEFramer",
    "make_framer",
]

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_EXCERPT_BYTES = 60


@dataclass(frozen=True, slots=True)
class Frame:
    """One unit of a response body.

    ``event``: the SSE event name, or for ``eventstream`` the event / exception
    type / error code.  ``meta``: SSE ``id`` / ``retry``; every header of an
    ``eventstream`` message.  ``offset``: where the frame began in the body.
    """

    data: str
    event: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    offset: int = 0


class Framer(Protocol):
    """Incremental splitter of a body into frames."""

    def feed(self, data: bytes) -> list[Frame]: ...

    def close(self) -> list[Frame]: ...


def _excerpt(data: bytes | bytearray, start: int) -> str:
    # Redact a window wider than the excerpt, then cut: a key that starts in the
    # excerpt is whole in the window, so no start of it survives the cut.
    window = bytes(data[start : start + _EXCERPT_BYTES + 1024])
    return repr(excerpt(window.decode("utf-8", "backslashreplace"), _EXCERPT_BYTES))


def _malformed(
    framer: str, what: str, offset: int, data: bytes | bytearray, start: int = 0
) -> EngineError:
    """*offset* is the absolute byte offset of ``data[start]``, shown in the excerpt."""
    excerpt = _excerpt(data, start)
    return EngineError("malformed_response", f"{framer}: {what} at byte {offset}: {excerpt}")


def _too_big(
    framer: str, size: int, limit: int, offset: int, data: bytes | bytearray, start: int = 0
) -> EngineError:
    what = f"frame of at least {size} bytes exceeds max_frame_bytes={limit}"
    return _malformed(framer, what, offset, data, start)


def _decode(framer: str, raw: bytes | bytearray, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(framer, "invalid UTF-8", offset + exc.start, raw, exc.start) from None


class _Base:
    """Shared state: the pending bytes, their absolute offset, open/closed."""

    name = "framer"

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._base = 0  # absolute offset of self._buf[0]
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.name} framer: feed() or close() after close()")

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n

    def _strip_bom(self) -> bool:
        """Drop a BOM at offset 0; False while the buffer is still a BOM prefix."""
        buf = self._buf
        if len(buf) < 3 and _BOM.startswith(buf):
            return False
        if buf.startswith(_BOM):
            self._consume(3)
        return True


class _LineFramer(_Base):
    """Line splitting shared by ``sse`` and ``ndjson``.

    Invariant: ``self._buf`` never holds a complete line; it is the tail after
    the last line end seen, so only newly fed bytes are searched.
    """

    _line_ends: tuple[bytes, ...] = (b"\n",)
    _cr_is_line_end = False

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._bom_done = False
        self._skip_lf = False
        self._out: list[Frame] = []

    def feed(self, data: bytes) -> list[Frame]:
        self._check_open()
        if not data:
            return []
        buf = self._buf
        scan_from = len(buf)
        buf += data
        if self._skip_lf:
            self._skip_lf = False
            if buf[0] == 0x0A:
                self._consume(1)
        if not self._bom_done:
            if not self._strip_bom():
                return []
            self._bom_done = True
            scan_from = 0
        cut = max(buf.rfind(end, scan_from) for end in self._line_ends) + 1
        if cut:
            seg = bytes(buf[:cut])
            start = self._base
            self._consume(cut)
            self._skip_lf = self._cr_is_line_end and seg.endswith(b"\r")
            try:
                self._lines(seg, start)
            except EngineError as exc:
                # The frames completed before the bad line are still the stream's: the
                # decoder delivers them before the error (however the bytes were cut).
                exc.frames = self._take()  # type: ignore[attr-defined]
                raise
        self._check_pending()
        return self._take()

    def close(self) -> list[Frame]:
        self._check_open()
        self._closed = True
        if self._buf:
            line = bytes(self._buf)
            start = self._base
            self._consume(len(line))
            self._last_line(line, start)
        self._finish()
        return self._take()

    def _take(self) -> list[Frame]:
        out, self._out = self._out, []
        return out

    def _lines(self, seg: bytes, start: int) -> None:
        """Process a run of complete lines, each ending in a line end."""
        raise NotImplementedError

    def _last_line(self, line: bytes, start: int) -> None:
        """Process the unterminated last line of the body."""
        raise NotImplementedError

    def _check_pending(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """End of body after the last line was processed."""


class SSEFramer(_LineFramer):
    """WHATWG event-stream framer (see the module docstring).

    ``close()`` processes an unterminated last line and dispatches a pending
    event even without the final blank line: servers often omit it, and
    whether the stream is complete is decided by the stream's own end
    condition (checked by the caller), not by the framing.
    """

    name = "sse"
    _line_ends = (b"\n", b"\r")
    _cr_is_line_end = True

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: str | None = None
        # Offset of the first field line since the last blank line; None when
        # no field line was seen (comments do not start an event).
        self._ev_start: int | None = None

    def _lines(self, seg: bytes, start: int) -> None:
        if not seg.isascii():
            try:  # validation: line ends never split a character
                seg.decode("utf-8")
            except UnicodeDecodeError as exc:
                # The whole lines before the bad one are framed first, then it fails.
                cut = max(seg.rfind(b"\n", 0, exc.start), seg.rfind(b"\r", 0, exc.start)) + 1
                if cut:
                    self._lines(seg[:cut], start)
                _decode(self.name, seg[cut:], start + cut)
        n_lf = seg.count(b"\n")
        n_cr = seg.count(b"\r")
        if n_cr == 0 or n_lf == 0 or n_cr == n_lf == seg.count(b"\r\n"):
            sep = b"\r\n" if n_cr and n_lf else (b"\r" if n_cr else b"\n")
            lines = seg.split(sep)
            lines.pop()
            self._process(lines, repeat(len(sep)), start)
        else:
            pieces = seg.splitlines(keepends=True)
            lines = [raw.rstrip(b"\r\n") for raw in pieces]
            ends = [len(raw) - len(line) for raw, line in zip(pieces, lines, strict=True)]
            self._process(lines, ends, start)

    def _process(self, lines: list[bytes], ends: Iterable[int], pos: int) -> None:
        """Interpret complete lines; *ends* gives each line's line-end width."""
        data = self._data
        ev_start = self._ev_start
        for line, end in zip(lines, ends, strict=False):
            if not line:
                if ev_start is not None:
                    self._dispatch(ev_start, pos)
                    ev_start = None
            elif line.startswith(b"data: "):
                if ev_start is None:
                    ev_start = pos
                data.append(line[6:])
            elif line[0] == 0x3A:
                if ev_start is None and len(line) > self._max:
                    raise _too_big(self.name, len(line), self._max, pos, line)
            else:
                if ev_start is None:
                    ev_start = pos
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name in _SSE_FIELDS:
                    self._field(name, value.decode("utf-8"))
            pos += len(line) + end
        self._ev_start = ev_start

    def _field(self, name: bytes, value: str) -> None:
        if name == b"event":
            self._event = value or None
        elif name == b"id":
            if "\0" not in value:
                self._id = value
        elif value.isascii() and value.isdigit():
            self._retry = value

    def _dispatch(self, start: int, end: int) -> None:
        """Emit the pending event (if any) spanning [start, end); reset the event state."""
        data = self._data
        if end - start > self._max:
            raise _too_big(self.name, end - start, self._max, start, b"\n".join(data))
        if data or self._event is not None:
            text = data[0].decode("utf-8") if len(data) == 1 else b"\n".join(data).decode("utf-8")
            meta = {} if self._id is None and self._retry is None else self._meta()
            self._out.append(Frame(text, self._event, meta, start))
            data.clear()  # in place: _process holds a reference
            self._event = None
        self._retry = None

    def _meta(self) -> dict[str, str]:
        meta = {"id": self._id} if self._id is not None else {}
        if self._retry is not None:
            meta["retry"] = self._retry
        return meta

    def _last_line(self, line: bytes, start: int) -> None:
        _decode(self.name, line, start)
        self._process([line], [0], start)

    def _check_pending(self) -> None:
        first = self._ev_start if self._ev_start is not None else self._base
        size = self._base + len(self._buf) - first
        if size > self._max:
            raise _too_big(self.name, size, self._max, self._base, self._buf)

    def _finish(self) -> None:
        if self._ev_start is not None:
            self._dispatch(self._ev_start, self._base)


_SSE_FIELDS = frozenset((b"event", b"id", b"retry"))


class BareJSONSSEFramer(SSEFramer):
    """``sse`` that also frames a bare JSON document written outside any event."""

    name = "sse-bare-json"

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._bare: list[bytes] = []
        self._bare_start = 0
        self._bare_size = 0

    def _process(self, lines: list[bytes], ends: Iterable[int], pos: int) -> None:
        for line, end in zip(lines, ends, strict=False):  # ends may be an endless repeat
            if self._bare or self._is_bare(line):
                self._take_bare(line, pos)
            else:
                super()._process([line], [end], pos)
            pos += len(line) + end

    def _is_bare(self, line: bytes) -> bool:
        if not line or line[0] == 0x3A or line.startswith(b"data"):
            return False
        name = line.partition(b":")[0]
        return name not in _SSE_FIELDS and line.lstrip()[:1] in (b"{", b"[")

    def _take_bare(self, line: bytes, pos: int) -> None:
        if not self._bare:
            self._bare_start = pos
        self._bare.append(line)
        self._bare_size += len(line) + 1
        if self._bare_size > self._max:
            raise _too_big(self.name, self._bare_size, self._max, self._bare_start, line)
        if line.rstrip()[-1:] in (b"}", b"]"):
            text = b"\n".join(self._bare)
            try:
                json.loads(text)
            except ValueError:
                return
            self._emit_bare(text)

    def _emit_bare(self, text: bytes) -> None:
        self._out.append(Frame(_decode(self.name, text, self._bare_start), None, {},
                               self._bare_start))
        self._bare, self._bare_size = [], 0

    def _finish(self) -> None:
        super()._finish()
        if self._bare:
            self._emit_bare(b"\n".join(self._bare))


class NDJSONFramer(_LineFramer):
    """Newline-delimited JSON: one frame per non-blank LF / CRLF line (not validated)."""

    name = "ndjson"

    def _lines(self, seg: bytes, start: int) -> None:
        lines = seg.split(b"\n")
        lines.pop()
        self._emit(lines, start)

    def _last_line(self, line: bytes, start: int) -> None:
        self._emit([line], start)

    def _emit(self, lines: list[bytes], pos: int) -> None:
        """Emit the non-blank lines; each but an unterminated last one ends in LF."""
        out = self._out
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if len(line) > self._max:
                raise _too_big(self.name, len(line), self._max, pos, line)
            if line and not line.isspace():
                try:
                    out.append(Frame(line.decode("utf-8"), None, {}, pos))
                except UnicodeDecodeError:
                    _decode(self.name, line, pos)  # raises with the offset
            pos += len(raw) + 1

    def _check_pending(self) -> None:
        if len(self._buf) > self._max:
            raise _too_big(self.name, len(self._buf), self._max, self._base, self._buf)


# json-array scanner states
_START, _FIRST, _ELEM, _AFTER, _IN, _DONE = range(6)
_WS = re.compile(rb"[ \t\r\n]*")
_STRUCT = re.compile(rb'["\[\]{}]')
_STRING_STOP = re.compile(rb'["\\]')
_PRIMITIVE_END = re.compile(rb"[^A-Za-z0-9+\-.]")
_PRIMITIVE_START = frozenset(b"-0123456789tfn")
_CLOSER = {0x5B: 0x5D, 0x7B: 0x7D}


class JSONArrayFramer(_Base):
    """A JSON array streamed incrementally; each top-level element is one frame.

    Elements are delimited, not validated: the scanner tracks strings, escapes
    and bracket nesting only.  A top-level object is emitted as one frame.
    """

    name = "json-array"

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._state = _START
        self._pos = 0  # scan position in self._buf; bytes before it are scanned
        self._elem = 0  # start of the current element in self._buf (state _IN)
        self._stack: list[int] = []  # expected closing brackets
        self._in_str = False
        self._primitive = False
        self._top_object = False
        self._out: list[Frame] = []

    def feed(self, data: bytes) -> list[Frame]:
        self._check_open()
        if not data:
            return []
        self._buf += data
        if self._base == 0 and self._state == _START and not self._strip_bom():
            return []
        while self._pos < len(self._buf) and self._step():
            pass
        if self._state == _IN:
            self._check_element_size()
        self._compact()
        out, self._out = self._out, []
        return out

    def close(self) -> list[Frame]:
        self._check_open()
        self._closed = True
        if self._state == _START and self._buf:
            raise self._garbage(0)
        if self._state not in (_START, _DONE):
            where = self._base + (self._elem if self._state == _IN else self._pos)
            raise EngineError(
                "incomplete_stream",
                f"{self.name}: body ended inside the array at byte {where} "
                f"({self._base + len(self._buf)} bytes received)",
            )
        return []

    def _step(self) -> bool:
        """Advance the scan; False when more bytes are needed."""
        if self._state == _IN:
            return self._scan_element()
        ws = _WS.match(self._buf, self._pos)
        pos = self._pos = ws.end() if ws else self._pos
        if pos == len(self._buf):
            return False
        byte = self._buf[pos]
        state = self._state
        if state == _START:
            self._start_body(byte)
        elif state == _AFTER and byte == 0x2C:
            self._state, self._pos = _ELEM, pos + 1
        elif state in (_FIRST, _AFTER) and byte == 0x5D:
            self._state, self._pos = _DONE, pos + 1
        elif state in (_FIRST, _ELEM):
            self._start_element(byte)
        else:
            raise self._garbage(pos)
        return True

    def _start_body(self, byte: int) -> None:
        if byte == 0x5B:
            self._state, self._pos = _FIRST, self._pos + 1
        elif byte == 0x7B:
            self._top_object = True
            self._start_element(byte)
        else:
            raise self._garbage(self._pos)

    def _start_element(self, byte: int) -> None:
        pos = self._pos
        if byte in _CLOSER:
            self._stack.append(_CLOSER[byte])
        elif byte == 0x22:
            self._in_str = True
        elif byte in _PRIMITIVE_START:
            self._primitive = True
        else:
            raise self._garbage(pos)
        self._state, self._elem, self._pos = _IN, pos, pos + 1

    def _scan_element(self) -> bool:
        buf = self._buf
        if self._in_str:
            m = _STRING_STOP.search(buf, self._pos)
            if m is None:
                return self._need_more(len(buf))
            i = m.start()
            if buf[i] == 0x5C:
                # An escape needs its next byte; resume at the backslash.
                return self._need_more(i) if i + 1 == len(buf) else self._advance(i + 2)
            self._in_str = False
            return self._advance(i + 1) if self._stack else self._complete(i + 1)
        if self._primitive:
            m = _PRIMITIVE_END.search(buf, self._pos)
            if m is None:
                return self._need_more(len(buf))
            self._primitive = False
            return self._complete(m.start())
        m = _STRUCT.search(buf, self._pos)
        if m is None:
            return self._need_more(len(buf))
        i = m.start()
        byte = buf[i]
        if byte == 0x22:
            self._in_str = True
        elif byte in _CLOSER:
            self._stack.append(_CLOSER[byte])
        elif byte != self._stack.pop():
            raise _malformed(self.name, "mismatched bracket", self._base + i, buf, i)
        elif not self._stack:
            return self._complete(i + 1)
        return self._advance(i + 1)

    def _advance(self, pos: int) -> bool:
        self._pos = pos
        return True

    def _need_more(self, pos: int) -> bool:
        self._pos = pos
        return False

    def _check_element_size(self) -> None:
        size = len(self._buf) - self._elem
        if size > self._max:
            offset = self._base + self._elem
            raise _too_big(self.name, size, self._max, offset, self._buf, self._elem)

    def _complete(self, end: int) -> bool:
        raw = self._buf[self._elem:end]
        offset = self._base + self._elem
        if len(raw) > self._max:
            raise _too_big(self.name, len(raw), self._max, offset, raw)
        self._out.append(Frame(_decode(self.name, raw, offset), offset=offset))
        self._state = _DONE if self._top_object else _AFTER
        self._pos = end
        return True

    def _compact(self) -> None:
        keep = self._elem if self._state == _IN else self._pos
        if keep:
            self._consume(keep)
            self._pos -= keep
            self._elem = max(self._elem - keep, 0)

    def _garbage(self, pos: int) -> EngineError:
        what = "unexpected data outside array elements"
        return _malformed(self.name, what, self._base + pos, self._buf, pos)


_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_FIXED_INTS = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"),
               5: struct.Struct(">q"), 8: struct.Struct(">q")}
_EVENT_NAME_HEADER = {"event": ":event-type", "exception": ":exception-type",
                      "error": ":error-code"}


class EventStreamFramer(_Base):
    """Binary event-stream (prelude + headers + payload + CRC32) framer.

    Message layout, integers big-endian::

        total_len u32 | headers_len u32 | prelude_crc u32 (crc32 of the 8 bytes before)
        headers (headers_len bytes) | payload | message_crc u32 (crc32 of all bytes before)

    ``Frame.event`` is the ``:event-type`` header, or ``:exception-type`` /
    ``:error-code`` when ``:message-type`` is ``exception`` / ``error``.
    ``Frame.meta`` holds every header stringified (bytes as base64, booleans
    as ``true``/``false``, timestamps as integer milliseconds, UUIDs in the
    canonical hyphenated form).
    """

    name = "eventstream"

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._need = 0  # total length of the message at the front, once its prelude is checked

    def feed(self, data: bytes) -> list[Frame]:
        self._check_open()
        self._buf += data
        out: list[Frame] = []
        while True:
            if not self._need and len(self._buf) >= _PRELUDE.size:
                self._need = self._check_prelude()
            if not self._need or len(self._buf) < self._need:
                return out
            out.append(self._message(bytes(self._buf[: self._need])))
            self._consume(self._need)
            self._need = 0

    def close(self) -> list[Frame]:
        self._check_open()
        self._closed = True
        if self._buf:
            expected = f" of {self._need}" if self._need else ""
            raise EngineError(
                "incomplete_stream",
                f"{self.name}: body ended inside a message at byte {self._base} "
                f"({len(self._buf)}{expected} bytes received)",
            )
        return []

    def _bad(self, what: str, rel: int = 0) -> EngineError:
        return _malformed(self.name, what, self._base + rel, self._buf, rel)

    def _check_prelude(self) -> int:
        total, headers_len, crc = _PRELUDE.unpack_from(self._buf)
        if zlib.crc32(self._buf[:8]) != crc:
            raise self._bad("prelude CRC mismatch")
        if total < 16 or headers_len > total - 16:
            raise self._bad(f"bad lengths (total {total}, headers {headers_len})")
        if total > self._max:
            raise _too_big(self.name, total, self._max, self._base, self._buf)
        return int(total)

    def _message(self, msg: bytes) -> Frame:
        (crc,) = _U32.unpack_from(msg, len(msg) - 4)
        if zlib.crc32(msg[:-4]) != crc:
            raise self._bad("message CRC mismatch")
        (headers_len,) = _U32.unpack_from(msg, 4)
        headers = self._headers(msg[12 : 12 + headers_len])
        payload = msg[12 + headers_len : -4]
        data = _decode(self.name, payload, self._base + 12 + headers_len)
        kind = headers.get(":message-type", "event")
        event = headers.get(_EVENT_NAME_HEADER.get(kind, ":event-type"))
        return Frame(data, event, headers, self._base)

    def _headers(self, raw: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        pos = 0
        try:
            while pos < len(raw):
                name_len = raw[pos]
                name_raw = raw[pos + 1 : pos + 1 + name_len]
                if len(name_raw) != name_len:
                    raise IndexError(pos)
                name = name_raw.decode("utf-8")
                if name in headers:
                    raise self._bad(f"duplicate header {name!r}", 12 + pos)
                headers[name], pos = self._value(raw, pos + 1 + name_len)
        except (IndexError, struct.error, UnicodeDecodeError, ValueError):
            raise self._bad("malformed headers", 12 + pos) from None
        return headers

    def _value(self, raw: bytes, pos: int) -> tuple[str, int]:
        kind = raw[pos]
        pos += 1
        if kind in (0, 1):
            return ("true" if kind == 0 else "false"), pos
        fixed = _FIXED_INTS.get(kind)
        if fixed is not None:
            return str(fixed.unpack_from(raw, pos)[0]), pos + fixed.size
        if kind == 9:
            if pos + 16 > len(raw):
                raise IndexError
            return str(uuid.UUID(bytes=raw[pos : pos + 16])), pos + 16
        if kind not in (6, 7):
            raise ValueError(kind)
        (size,) = _U16.unpack_from(raw, pos)
        value = raw[pos + 2 : pos + 2 + size]
        if len(value) != size:
            raise IndexError
        text = base64.b64encode(value).decode("ascii") if kind == 6 else value.decode("utf-8")
        return text, pos + 2 + size


class JSONFramer(_Base):
    """The whole body is one frame (leading BOM stripped, nothing else touched)."""

    name = "json"

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes)
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._check_open()
        self._size += len(data)
        if self._size > self._max:
            head = self._chunks[0] if self._chunks else data
            raise _too_big(self.name, self._size, self._max, 0, head)
        if data:
            self._chunks.append(bytes(data))
        return []

    def close(self) -> list[Frame]:
        self._check_open()
        self._closed = True
        body = b"".join(self._chunks)
        self._chunks = []
        start = 3 if body.startswith(_BOM) else 0
        return [Frame(_decode(self.name, body[start:], start), offset=0)]


_REGISTRY: dict[str, Callable[..., Framer]] = {
    "sse": SSEFramer,
    "sse-bare-json": BareJSONSSEFramer,
    "ndjson": NDJSONFramer,
    "json-array": JSONArrayFramer,
    "eventstream": EventStreamFramer,
    "json": JSONFramer,
}
FRAMERS: Mapping[str, Callable[..., Framer]] = MappingProxyType(_REGISTRY)


def make_framer(name: str, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Framer:
    """Return a new framer registered under *name*; ValueError for an unknown name."""
    factory = FRAMERS.get(name)
    if factory is None:
        known = ", ".join(sorted(FRAMERS))
        raise ValueError(f"unknown framer {name!r}; known framers: {known}")
    if isinstance(max_frame_bytes, bool) or not isinstance(max_frame_bytes, int) \
            or max_frame_bytes <= 0:
        raise ValueError(f"max_frame_bytes must be a positive int, not {max_frame_bytes!r}")
    return factory(max_frame_bytes=max_frame_bytes)
