"""Reading manifest files: safe loading, the ``extends`` chain and merging.

:func:`trace` loads a file and its ``extends`` chain (depth-limited, cycles
refused, each name checked with :func:`~engine.manifest.locate.valid_id` before
any file is looked up) and deep-merges them child over parent
(:func:`~engine.manifest.merge.deep_merge`). A list of
:data:`~engine.manifest.schema.NAMED_LISTS` that a file writes as a mapping is
a patch of its parent's list by item name
(:func:`~engine.manifest.merge.patch_list`); without a parent list it is the
list of its items in mapping order. The :class:`Resolved` result says, per
item of each such merged list, which files write it and at which key
(:data:`~engine.manifest.locate.Origins`), and lists the patches' problems
(a placement or removal naming no item...) and the items a child restates
unchanged from its parent. Nothing here validates or compiles; a failure to
read the chain, an unreadable file included, is a :class:`ManifestError`
whose message is one ``file:line: key.path: message``. :func:`resolve` is the
merged data and the chain alone, raising on a patch problem too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ..errors import ManifestError
from .locate import (
    KeyPath,
    Origins,
    RawDoc,
    Written,
    find_manifest,
    format_path,
    id_problem,
    same_file,
    search_dirs,
    valid_id,
)
from .merge import deep_merge, item_name, patch_list
from .schema import NAMED_LISTS
from .yamlsrc import MAX_YAML_BYTES, load_yaml

__all__ = ["MAX_EXTENDS_DEPTH", "Note", "Resolved", "load_raw", "resolve", "trace"]

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


Note = tuple[int, KeyPath, str]  # (file in the chain, key in that file, message)


@dataclass
class Resolved:
    """A manifest file with its ``extends`` chain, merged (see the module docstring)."""

    merged: dict[str, Any]
    chain: list[RawDoc]  # child first
    origins: Origins = field(default_factory=dict)
    problems: list[Note] = field(default_factory=list)
    restated: list[Note] = field(default_factory=list)  # items equal to the parent's


def resolve(path: FsPath, dirs: list[FsPath] | None = None) -> tuple[dict[str, Any], list[RawDoc]]:
    """Load *path* and its ``extends`` chain; return (merged data, chain child-first)."""
    done = trace(path, dirs)
    if done.problems:
        lines = [f"{done.chain[i].path}:{done.chain[i].line_of(key) or 1}: "
                 f"{format_path(key)}: {text}" for i, key, text in done.problems]
        raise ManifestError(lines[0], problems=lines)
    return done.merged, done.chain


def trace(path: FsPath, dirs: list[FsPath] | None = None) -> Resolved:
    """Load *path* and its ``extends`` chain and merge it, tracing the named lists."""
    chain = _chain(path, dirs)
    done = Resolved({}, chain)
    for index in range(len(chain) - 1, -1, -1):
        body = {k: v for k, v in chain[index].data.items() if k != "extends"}
        base = _origin_bound(done.merged, body)
        done.merged = deep_merge(base, _patched(base, body, index, done))
    return done


def _chain(path: FsPath, dirs: list[FsPath] | None) -> list[RawDoc]:
    """The file at *path* and the files it extends, child first."""
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
    return chain


_ABSENT = object()


def _get(tree: Any, path: KeyPath) -> Any:
    for step in path:
        if not isinstance(tree, Mapping) or step not in tree:
            return _ABSENT
        tree = tree[step]
    return tree


def _put(tree: dict[str, Any], path: KeyPath, value: Any) -> dict[str, Any]:
    """A copy of *tree* with *value* at *path* (every mapping on the way copied)."""
    out = dict(tree)
    head, rest = path[0], path[1:]
    out[str(head)] = _put(tree[str(head)], rest, value) if rest else value
    return out


def _patched(base: dict[str, Any], body: dict[str, Any], index: int,
             done: Resolved) -> dict[str, Any]:
    """*body* (file *index*) with each patch applied to *base*'s list; origins kept."""
    for path in NAMED_LISTS:
        parent, value = _get(base, path), _get(body, path)
        items = parent if isinstance(parent, list) else []
        below = done.origins.get(path, []) if isinstance(parent, list) else []
        if isinstance(value, dict):
            result = patch_list(items, value)
            body = _put(body, path, result.items)
            done.origins[path] = [_written(index, path, key, below, at)
                                  for at, key in result.sources]
            done.problems.extend((index, (*path, *key), text) for key, text in result.problems)
            done.restated.extend((index, (*path, key), f"restates the parent's rule {key!r}; "
                                  "remove it") for key in result.unchanged)
        elif isinstance(value, list):
            done.origins[path] = [((index, (*path, i)),) for i in range(len(value))]
            done.restated.extend((index, (*path, i), _repeats(name))
                                 for i, name in _repeated(items, value))
        elif value is not _ABSENT:
            done.origins.pop(path, None)  # null deletes the list; anything else is wrong
    return body


def _written(index: int, path: KeyPath, key: str | None, below: list[Written],
             at: int | None) -> Written:
    """Where a patched list's item is written: the patch's key (if any) over the parent's."""
    own: Written = ((index, (*path, key)),) if key is not None else ()
    return own + (below[at] if at is not None and at < len(below) else ())


def _repeats(name: str | None) -> str:
    rule = f"the parent's rule {name!r}" if name is not None else "a rule of the parent"
    return f"restates {rule}; change the parent's list by name instead of repeating it"


def _repeated(parent: list[Any], child: list[Any]) -> list[tuple[int, str | None]]:
    """Items of *child* equal to one of *parent* (``name`` aside): (index, parent's name)."""
    if not parent:
        return []
    known: dict[Any, str | None] = {}
    for item in parent:
        known.setdefault(_unnamed(item), item_name(item))
    found = []
    for i, item in enumerate(child):
        key = _unnamed(item)
        if key in known:
            found.append((i, known[key]))
    return found


def _unnamed(item: Any) -> Any:
    """A hashable form of a list item, its ``name`` left out."""
    if isinstance(item, Mapping):
        return frozenset((k, _frozen(v)) for k, v in item.items() if k != "name")
    return _frozen(item)


def _frozen(value: Any) -> Any:
    """A hashable form of a YAML value."""
    if isinstance(value, Mapping):
        return frozenset((k, _frozen(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:  # a YAML set, say: compared by its text
        return repr(value)
    return value


def _origin_bound(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """The parent without what is bound to its origin, when the child names its own.

    A key variable (``auth.env``), a base-URL variable (``base_url_env``), the
    settings that fill the parent's address (``settings``) and the model
    catalogue (``models``) belong to the parent's server: a child
    that sets ``base_url`` inherits none of them, so a user's key for one
    provider is never sent to another's host, and one host's models (and
    prices) are never listed as another's.
    """
    if "base_url" not in child:
        return parent
    out = {k: v for k, v in parent.items() if k not in ("base_url_env", "models", "settings")}
    if isinstance(out.get("auth"), dict):
        out["auth"] = {k: v for k, v in out["auth"].items() if k != "env"}
    return out


