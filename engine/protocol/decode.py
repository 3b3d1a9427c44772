"""A streamed body in, events out: framer, mapper and accumulator behind a pull API. Sans-I/O.

Modelled on h11's connection object::

    decoder = StreamDecoder(manifest, model)
    decoder.receive_data(chunk)          # any split of the body; b"" when it ended
    while True:
        event = decoder.next_event()     # a StreamEvent, NEED_DATA, or END
        ...

:meth:`StreamDecoder.next_event` returns every event the data completed, in
order; then ``NEED_DATA`` while the stream is open, ``END`` once it is
complete (the end marker, or a clean end of body where the manifest allows
it). A problem (a provider error inside the stream, a malformed frame, a body
that ends before the end marker) is raised by ``next_event`` only after every
event that preceded it was returned, and raised again on every later call.
``incomplete_stream`` errors and provider errors carry the answer so far in
``.partial``. All state lives in the decoder: one per request.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Final

from ..errors import EngineError
from ..events import StreamEvent
from ..manifest.model import Manifest
from ..types import ChatResponse
from .accumulate import Accumulator
from .framing import DEFAULT_MAX_FRAME_BYTES, Frame, make_framer
from .rules import FrameRules

__all__ = ["END", "NEED_DATA", "StreamDecoder"]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
END: Final = _Sentinel("END")

_DATA_ERRORS = (ValueError, TypeError, OverflowError, KeyError, AttributeError, RecursionError)


class StreamDecoder:
    """Bytes of one streamed response in, normalized events out."""

    def __init__(self, manifest: Manifest, model: str, *,
                 max_frame_bytes: int | None = None,
                 rules: FrameRules | None = None) -> None:
        self._rules = rules or FrameRules(manifest)
        self._provider = manifest.id
        self._framer = make_framer(self._rules.spec.framing,
                                   max_frame_bytes=max_frame_bytes or DEFAULT_MAX_FRAME_BYTES)
        self._eof_ok = self._rules.spec.eof_ok
        self._acc = Accumulator(manifest, model)
        self._queue: deque[StreamEvent] = deque()
        self._error: EngineError | None = None

    # -- input

    def receive_data(self, data: bytes) -> None:
        """Feed body bytes; ``b""`` says the body ended. Ignored once the stream is over."""
        if self._acc.done or self._error is not None:
            return
        if not data:
            self._close()
            return
        try:
            frames = self._framer.feed(data)
        except EngineError as exc:
            # Frames the framer completed before the error come first.
            early = getattr(exc, "frames", None)
            if early:
                self._frames(early, at_eof=False)
                if self._acc.done or self._error is not None:
                    return
            self._fail(exc)
            return
        self._frames(frames, at_eof=False)

    # -- output

    def next_event(self) -> StreamEvent | _Sentinel:
        """The next event, ``NEED_DATA`` or ``END``; raises the stream's error in its place."""
        if self._queue:
            return self._queue.popleft()
        if self._error is not None:
            raise self._error
        return END if self._acc.done else NEED_DATA

    @property
    def complete(self) -> bool:
        """The end was reached without an error (events may still be queued)."""
        return self._acc.done and self._error is None

    @property
    def response(self) -> ChatResponse:
        """The response accumulated so far (the whole answer once ``END`` was returned)."""
        return self._acc.response

    # -- internals

    def _close(self) -> None:
        try:
            frames = self._framer.close()
        except EngineError as exc:
            self._fail(exc, partial=exc.kind == "incomplete_stream")
            return
        self._frames(frames, at_eof=True)
        if self._acc.done or self._error is not None:
            return
        if self._eof_ok and self._acc.has_finish_reason:
            try:
                self._acc.finish()
            except EngineError as exc:
                self._fail(exc)
            self._queue.extend(self._acc.take_events())
            return
        self._fail(EngineError("incomplete_stream", "the stream ended before its end marker"),
                   partial=True)

    def _frames(self, frames: list[Frame], at_eof: bool) -> None:
        try:
            for frame in frames:
                delta = self._rules.map(frame, at_eof)
                if delta is None:
                    continue
                if delta.error is not None:
                    self._fail(delta.error, partial=True)
                    return
                self._acc.apply(delta)
                if self._acc.done:
                    break
        except EngineError as exc:
            self._fail(exc, partial=exc.kind == "incomplete_stream")
        except _DATA_ERRORS as exc:  # odd data reaching the mapping: still the provider's
            self._fail(EngineError("malformed_response", f"cannot map a stream frame: "
                                   f"{type(exc).__name__}: {exc}"))
        self._queue.extend(self._acc.take_events())

    def _fail(self, exc: EngineError, *, partial: bool = False) -> None:
        """Park *exc* behind the events produced so far (it is raised after them)."""
        self._queue.extend(self._acc.take_events())
        if self._error is not None:
            return
        if exc.provider is None:
            exc.provider = self._provider
        if partial and exc.partial is None:
            with contextlib.suppress(EngineError):  # a partial that cannot be built is left out
                exc.partial = self._acc.response
        self._error = exc
