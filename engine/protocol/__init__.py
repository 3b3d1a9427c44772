"""The protocol layer: everything between a normalized request and a normalized answer.

One module per stage and per registry, all pure (no I/O, no httpx):
:mod:`.render` (request -> :class:`~engine.protocol.render.PreparedRequest`),
:mod:`.auth` (auth schemes), :mod:`.framing` (body bytes -> frames),
:mod:`.rules` (frames or a whole body -> deltas), :mod:`.accumulate` (deltas
-> events and the response), :mod:`.decode` (a stream's pull API),
:mod:`.classify` (errors), and :mod:`.plan` (attempts, retries, fallbacks).
"""
