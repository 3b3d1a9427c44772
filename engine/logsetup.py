"""``ENGINE_LOG``: turn on the library's logging without code.

The library logs to the ``engine`` logger (requests sent, answers received
with their timing, retries, fallbacks, manifest cache misses) and, like any
library, installs no handler: the application decides. Setting the
environment variable ``ENGINE_LOG`` to ``debug``, ``info`` or ``warning``
(any case, surrounding blanks ignored) is the shortcut for a terminal session:

* :func:`configure_from_env` reads the variable once per process (the first
  call decides; later calls only return what it did) and hands it to
  :func:`configure`;
* :func:`configure` with a known level sets the ``engine`` logger to that
  level and attaches one :class:`logging.StreamHandler` on stderr (format
  ``TIME LEVEL engine: message``) at that level. Called again it reuses that
  handler (only the levels change), so there is never more than one. The
  logger's ``propagate`` is left alone: an application that also configures
  the root logger sees the records there too;
* unset or empty: nothing changes, no handler;
* any other value: nothing changes, and one ``RuntimeWarning`` names the value
  and the accepted ones (once per process for a given value).

No record carries an API key (errors are redacted where they are built).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import TextIO

__all__ = ["ENV", "HANDLER_NAME", "LEVELS", "configure", "configure_from_env"]

ENV = "ENGINE_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
HANDLER_NAME = "engine.logsetup"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_lock = threading.Lock()
_done = False
_result: logging.Handler | None = None
_warned: set[str] = set()
_warned_lock = threading.Lock()


def configure_from_env() -> logging.Handler | None:
    """Apply ``$ENGINE_LOG`` the first time this is called; the handler, or None."""
    global _done, _result
    if _done:  # the common case, without the lock: a client is created after the first
        return _result
    with _lock:
        if not _done:
            _result = _apply(os.environ.get(ENV), None, 4)
            _done = True
        return _result


def configure(value: str | None, stream: TextIO | None = None) -> logging.Handler | None:
    """Apply one ``ENGINE_LOG`` *value* now (see the module docstring); the handler, or None.

    *stream* is where a new handler writes (default: ``sys.stderr`` at this call).
    """
    return _apply(value, stream, 4)


def _apply(value: str | None, stream: TextIO | None, stacklevel: int) -> logging.Handler | None:
    # stacklevel: the warning names the line that called the public function
    if value is None or not value.strip():
        return None
    level = LEVELS.get(value.strip().lower())
    if level is None:
        _warn_once(value, stacklevel)
        return None
    logger = logging.getLogger("engine")
    handler = _installed(logger) or _new_handler(logger, stream)
    handler.setLevel(level)
    logger.setLevel(level)
    return handler


def _installed(logger: logging.Logger) -> logging.Handler | None:
    return next((h for h in logger.handlers if h.get_name() == HANDLER_NAME), None)


def _new_handler(logger: logging.Logger, stream: TextIO | None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    return handler


def _warn_once(value: str, stacklevel: int) -> None:
    with _warned_lock:
        if value in _warned:
            return
        _warned.add(value)
    accepted = ", ".join(LEVELS)
    warnings.warn(f"{ENV}={value!r} is ignored: use one of {accepted}", RuntimeWarning,
                  stacklevel=stacklevel)
