"""Where manifests are: ids, the search path, file lookup, and where each key sits.

A manifest id (a provider id, an ``extends`` name, a file's stem) matches
:data:`ID_PATTERN`: 1 to :data:`MAX_ID` characters, lower-case letters, digits,
``.``, ``_``, ``-``, starting with a letter or digit, no ``..``
(:func:`valid_id`; :func:`id_problem` says what is wrong with one that is not).
:func:`named_path` names a list item by its ``name`` (for reports);
:func:`find_manifest` locates ``<id>.yaml`` in the search path
(``AI_PROTOCOL_PATH`` directories first, then the built-in ``protocols/``); it
returns None for an invalid id and never raises ``OSError`` (an unreadable
directory or candidate is skipped). :class:`RawDoc` is one loaded file with the
line of every key, for ``file:line`` reports. No YAML parsing here (see
:mod:`.source`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

__all__ = ["ID_PATTERN", "MAX_ID", "MAX_YAML_BYTES", "NAME_PATTERN", "PATH_ENV", "KeyPath",
           "Origins", "RawDoc", "Written", "builtin_dir", "find_manifest", "format_path",
           "id_problem", "named_path", "reach", "same_file", "search_dirs", "shorten",
           "valid_id"]

PATH_ENV = "AI_PROTOCOL_PATH"
MAX_YAML_BYTES = 1024 * 1024  # a manifest file is at most this large
MAX_ID = 64
ID_PATTERN = rf"(?!.*\.\.)[a-z0-9][a-z0-9._-]{{0,{MAX_ID - 1}}}"  # no '..' anywhere
NAME_PATTERN = r"[a-z0-9_-]{1,64}"  # a list item's name: its identity within its list
KeyPath = tuple[str | int, ...]
# Where one item of a merged list is written: (file in the chain, the item's key in that
# file), highest precedence first; Origins holds them per list of the merged manifest.
Written = tuple[tuple[int, KeyPath], ...]
Origins = dict[KeyPath, list[Written]]


def valid_id(name: object) -> bool:
    """Whether *name* is a well-formed manifest id (see :data:`ID_PATTERN`)."""
    return isinstance(name, str) and re.fullmatch(ID_PATTERN, name) is not None


def shorten(text: str, limit: int = 40) -> str:
    """``repr`` of *text*, cut to *limit* characters with its length when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def id_problem(name: str, what: str = "manifest") -> str:
    """Why *name* is not a *what* id (for a report line or an error message)."""
    return (f"invalid {what} id {shorten(name)}: an id is 1 to {MAX_ID} lower-case "
            "letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'")


def format_path(path: KeyPath) -> str:
    """``("chat", "request", 0)`` -> ``chat.request[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def named_path(tree: Any, key: KeyPath, lists: tuple[KeyPath, ...]) -> KeyPath:
    """*key* of *tree*, an item of one of *lists* by its name (when it has a valid one)
    instead of its index: ``("errors", "rules", 2, "kind")`` -> ``(..., "quota", "kind")``."""
    for path in lists:
        at = len(path)
        if key[:at] != path or len(key) <= at or not isinstance(key[at], int):
            continue
        held, _ = reach(tree, key[:at + 1])
        if held == at + 1:
            item = _at(tree, key[:at + 1])
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and re.fullmatch(NAME_PATTERN, name):
                return (*path, name, *key[at + 1:])
    return key


def _at(tree: Any, key: KeyPath) -> Any:
    for step in key:
        tree = tree[step]
    return tree


def builtin_dir() -> FsPath:
    """The manifests shipped with the package (or the repository's, in development)."""
    package = FsPath(__file__).resolve().parent.parent
    packaged = package / "_protocols"
    return packaged if packaged.is_dir() else package.parent / "protocols"


def search_dirs() -> list[FsPath]:
    """``AI_PROTOCOL_PATH`` directories (in order), then the built-in directory."""
    dirs = [FsPath(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    return [*dirs, builtin_dir()]


def find_manifest(name: str, dirs: list[FsPath] | None = None,
                  exclude: FsPath | None = None) -> FsPath | None:
    """The first ``<name>.yaml`` in *dirs* that is not *exclude* (None for an invalid id)."""
    if not valid_id(name):
        return None
    for directory in dirs if dirs is not None else search_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name}{suffix}"
            if _is_file(candidate) and (exclude is None or not same_file(candidate, exclude)):
                return candidate
    return None


def _is_file(path: FsPath) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for this file system, a directory we may not read
        return False


def same_file(a: FsPath, b: FsPath) -> bool:
    """Whether *a* and *b* name the same file (False when either cannot be resolved)."""
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False


# ---------------------------------------------------------------- loading

@dataclass(frozen=True)
class RawDoc:
    """One manifest file as loaded: its data and where each key sits."""

    path: FsPath
    data: dict[str, Any]
    lines: dict[KeyPath, int]

    def line_of(self, key: KeyPath) -> int | None:
        """The line of *key*, or of its nearest ancestor this file writes."""
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                return line
        return None

    def reach(self, key: KeyPath) -> tuple[int, bool]:
        """(how many steps of *key* this file's data holds, whether it decides *key*).

        A file decides a key it holds whole, and one below a list or scalar it
        writes (merging replaces those whole); below a mapping that lacks the
        next step, a parent may supply it.
        """
        return reach(self.data, key)


def reach(tree: Any, key: KeyPath) -> tuple[int, bool]:
    """:meth:`RawDoc.reach` for any tree (also a template tree layer)."""
    value = tree
    for depth, step in enumerate(key):
        if not _has(value, step):
            return depth, not isinstance(value, dict)
        value = value[step]
    return len(key), True


def _has(value: Any, step: str | int) -> bool:
    if isinstance(value, dict):
        return step in value
    return isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)


