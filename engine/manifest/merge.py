"""Deep merge of manifest trees (``extends``, overrides) and of request bodies. Pure.

Mappings merge recursively; a ``None`` (YAML ``null``) in the overlay deletes
the key; any other value replaces. Lists are replaced whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["deep_merge"]


def deep_merge(base: Any, over: Any) -> Any:
    """Merge *over* onto *base*: mappings recursively, ``None`` deletes, others replace."""
    if not (isinstance(base, Mapping) and isinstance(over, Mapping)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
