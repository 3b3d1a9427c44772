"""Regular expressions from manifests, searched in bounded time.

Manifest patterns (error ``message_matches``, retry hints, model-family
``overrides``) are text from the internet. Python's ``re`` has no time limit,
so a pattern like ``(a|aa)+$`` against a long provider message could run for
ever. They are compiled with the ``regex`` package, whose searches take a
timeout: a search that runs out of time counts as no match (and is logged).
Searches also see at most :data:`MAX_SCAN` characters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import regex

__all__ = ["MAX_SCAN", "SEARCH_SECONDS", "Pattern", "PatternError", "compile_pattern"]

log = logging.getLogger("engine")
MAX_SCAN = 4096
SEARCH_SECONDS = 0.05


class PatternError(Exception):
    """A manifest pattern does not compile."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled, case-insensitive pattern whose searches are bounded in time."""

    source: str
    compiled: Any

    def search(self, text: str) -> Any:
        """The first match in (a bounded prefix of) *text*, or None."""
        try:
            return self.compiled.search(text[:MAX_SCAN], timeout=SEARCH_SECONDS)
        except TimeoutError:
            log.warning("pattern %r gave up after %.2fs; treated as no match", self.source,
                        SEARCH_SECONDS)
            return None


def compile_pattern(source: str) -> Pattern:
    """Compile *source* (case-insensitive, ``.`` matches newlines)."""
    try:
        return Pattern(source, regex.compile(source, regex.IGNORECASE | regex.DOTALL))
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise PatternError(f"invalid regular expression: {exc}") from None
