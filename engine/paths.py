"""JMESPath expressions, compiled once, searched many times.

:func:`compile_path` parses an expression at manifest load time (raising
:class:`PathError` on bad syntax); :meth:`Path.search` never raises anything
but :class:`PathError` (a type error inside an expression on odd data is a
data problem the caller classifies, usually as ``malformed_response``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.parser

__all__ = ["Path", "PathError", "compile_path"]


class PathError(Exception):
    """A JMESPath expression failed to compile or to evaluate."""


class _Functions(jmespath.functions.Functions):
    """Extra functions available to manifests."""

    @jmespath.functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_lower_eq(self, value: str | None, other: str) -> bool:
        """Case-insensitive string equality: ``lower_eq(type, 'Error')``."""
        return value is not None and value.lower() == other.lower()


_OPTIONS = jmespath.Options(custom_functions=_Functions())


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled JMESPath expression."""

    source: str
    parsed: jmespath.parser.ParsedResult

    def search(self, data: Any) -> Any:
        try:
            return self.parsed.search(data, options=_OPTIONS)
        except jmespath.exceptions.JMESPathError as exc:
            raise PathError(f"{self.source!r}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise PathError(f"{self.source!r}: {exc}") from None


def compile_path(source: str) -> Path:
    """Parse *source* once; raise :class:`PathError` with the reason."""
    if not isinstance(source, str) or not source.strip():
        raise PathError("a JMESPath expression must be a non-empty string")
    try:
        return Path(source, jmespath.compile(source))
    except jmespath.exceptions.JMESPathError as exc:
        raise PathError(f"invalid JMESPath {source!r}: {exc}") from None
