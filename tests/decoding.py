"""Test helper: drive a StreamDecoder through its pull API, chunk by chunk.

``Fed`` wraps :class:`engine.protocol.decode.StreamDecoder` with the
call-and-collect shape many tests want: ``feed(chunk)`` and ``close()``
return the events that became ready, and ``error`` / ``done`` say how the
stream stands. It only uses the public pull API (``receive_data``,
``next_event``), so what the tests see is what the drivers see.
"""

from __future__ import annotations

from typing import Any

from engine.errors import EngineError
from engine.events import StreamEvent
from engine.manifest.model import Manifest
from engine.protocol.decode import END, NEED_DATA, StreamDecoder
from engine.types import ChatResponse


class Fed:
    def __init__(self, manifest: Manifest, model: str, **options: Any) -> None:
        self.decoder = StreamDecoder(manifest, model, **options)
        self.error: EngineError | None = None
        self.done = False

    def _pull(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self.error is not None:
            return events
        try:
            while True:
                event = self.decoder.next_event()
                if event is NEED_DATA:
                    break
                if event is END:
                    self.done = True
                    break
                assert isinstance(event, StreamEvent)
                events.append(event)
        except EngineError as exc:
            self.error = exc
        return events

    def feed(self, data: bytes) -> list[StreamEvent]:
        if data:
            self.decoder.receive_data(data)
        return self._pull()

    def close(self) -> list[StreamEvent]:
        self.decoder.receive_data(b"")
        return self._pull()

    @property
    def response(self) -> ChatResponse:
        return self.decoder.response
