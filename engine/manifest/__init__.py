"""Manifests: the compiled model, the expressions it holds, and how files become it.

Modules, by the layer they belong to:

* the model the interpreter runs: :mod:`.model` (frozen specs, no
  third-party import), :mod:`.merge`, and the compiled expressions
  :mod:`.paths` (JMESPath), :mod:`.patterns` (bounded regexes),
  :mod:`.templates` (sandboxed Jinja trees);
* loading, used when a client is created and by ``engine.validate``:
  :mod:`.locate` (the search path), :mod:`.yamlsrc` and :mod:`.source`
  (files, ``extends``), :mod:`.schema` (the cerberus schema), :mod:`.check`
  (the full check), :mod:`.compile` (mapping to model), :mod:`.load` (the
  caches).

Importing this package imports none of them; the names below are loaded on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Manifest": "model",
    "load_manifest": "load",
    "clear_cache": "load",
    "compile_file": "load",
    "check": "check",
    "find_manifest": "locate",
    "search_dirs": "locate",
    "builtin_dir": "locate",
    "resolve": "source",
    "deep_merge": "merge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.manifest' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
