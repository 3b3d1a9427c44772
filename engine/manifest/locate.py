"""Where manifests are: the search path, file lookup, and where each key sits.

:func:`find_manifest` locates ``<id>.yaml`` in the search path
(``AI_PROTOCOL_PATH`` directories first, then the built-in ``protocols/``).
:class:`RawDoc` is one loaded file with the line of every key, for
``file:line`` reports. No YAML parsing here (see :mod:`.source`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

__all__ = ["MAX_YAML_BYTES", "PATH_ENV", "KeyPath", "RawDoc", "builtin_dir", "find_manifest",
           "format_path", "same_file", "search_dirs"]

PATH_ENV = "AI_PROTOCOL_PATH"
MAX_YAML_BYTES = 1024 * 1024  # a manifest file is at most this large
KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """``("chat", "request", 0)`` -> ``chat.request[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


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
    """The first ``<name>.yaml`` in *dirs* that is not *exclude*."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) or ".." in name:
        return None
    for directory in dirs if dirs is not None else search_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file() and (exclude is None or not same_file(candidate, exclude)):
                return candidate
    return None


def same_file(a: FsPath, b: FsPath) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# ---------------------------------------------------------------- loading

@dataclass(frozen=True)
class RawDoc:
    """One manifest file as loaded: its data and where each key sits."""

    path: FsPath
    data: dict[str, Any]
    lines: dict[KeyPath, int]

    def line_of(self, key: KeyPath) -> int | None:
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                return line
        return None


