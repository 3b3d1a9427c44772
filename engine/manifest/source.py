"""Reading manifest files: safe loading, the ``extends`` chain and merging.

:func:`resolve` loads a file and its ``extends`` chain (depth-limited, cycles
refused, each name checked with :func:`~engine.manifest.locate.valid_id` before
any file is looked up) and deep-merges them child over parent
(:func:`~engine.manifest.merge.deep_merge`). Nothing here validates or
compiles; every failure, an unreadable file included, is a
:class:`ManifestError` whose message is one ``file:line: key.path: message``.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from ..errors import ManifestError
from .locate import RawDoc, find_manifest, id_problem, same_file, search_dirs, valid_id
from .merge import deep_merge
from .yamlsrc import MAX_YAML_BYTES, load_yaml

__all__ = ["MAX_EXTENDS_DEPTH", "load_raw", "resolve"]

MAX_EXTENDS_DEPTH = 8


def load_raw(path: FsPath) -> RawDoc:
    """Read one file; raise ManifestError (``file:line: ...``) when unreadable."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ManifestError(f"{name}:1: (top): file is larger than {MAX_YAML_BYTES} bytes")
        with path.open("rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{name}:1: (top): cannot read: {exc.strerror or exc}") from None
    data, lines = load_yaml(raw, name)
    if data is None:
        raise ManifestError(f"{name}:1: (top): empty file, expected a manifest mapping")
    if not isinstance(data, dict):
        raise ManifestError(f"{name}:1: (top): expected a mapping at the top level, "
                            f"got {type(data).__name__}")
    return RawDoc(path, data, lines)


def resolve(path: FsPath, dirs: list[FsPath] | None = None) -> tuple[dict[str, Any], list[RawDoc]]:
    """Load *path* and its ``extends`` chain; return (merged data, chain child-first)."""
    chain = [load_raw(path)]
    while True:
        doc = chain[-1]
        parent = doc.data.get("extends")
        if parent is None:
            break
        where = f"{doc.path}:{doc.line_of(('extends',)) or 1}: extends"
        if not isinstance(parent, str):
            raise ManifestError(f"{where}: must be a manifest id")
        if not valid_id(parent):
            raise ManifestError(f"{where}: {id_problem(parent)}")
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise ManifestError(f"{where}: extends chain deeper than {MAX_EXTENDS_DEPTH}")
        search = [doc.path.parent, *(dirs if dirs is not None else search_dirs())]
        found = find_manifest(parent, search, exclude=doc.path)
        if found is None:
            raise ManifestError(f"{where}: no manifest named {parent!r} in "
                                f"{', '.join(str(d) for d in search)}")
        if any(same_file(found, d.path) for d in chain):
            names = " -> ".join(str(d.path.name) for d in chain)
            raise ManifestError(f"{where}: extends cycle: {names} -> {found.name}")
        chain.append(load_raw(found))
    merged: dict[str, Any] = {}
    for doc in reversed(chain):
        body = {k: v for k, v in doc.data.items() if k != "extends"}
        merged = deep_merge(_origin_bound(merged, body), body)
    return merged, chain


def _origin_bound(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """The parent without what is bound to its origin, when the child names its own.

    A key variable (``auth.env``) and a base-URL variable (``base_url_env``)
    belong to the parent's server: a child that sets ``base_url`` inherits
    neither, so a user's key for one provider is never sent to another's host.
    """
    if "base_url" not in child:
        return parent
    out = {k: v for k, v in parent.items() if k != "base_url_env"}
    if isinstance(out.get("auth"), dict):
        out["auth"] = {k: v for k, v in out["auth"].items() if k != "env"}
    return out


