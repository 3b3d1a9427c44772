"""Load a provider's manifest for a client: check once per content, compile once per process.

:func:`load_manifest` checks the provider id first (an ill-formed one, e.g.
300 characters or a ``/``, is a :class:`~engine.errors.ManifestError` of kind
``invalid_request`` before any file is looked up, like an unknown one), then
finds ``<provider>.yaml`` on the search path and returns
its compiled :class:`~engine.manifest.model.Manifest`, kept in memory per
(provider, search path). The first time a given content is seen it is checked
in full (:mod:`engine.manifest.check`: schema, compile, dry-run render);
the merged, checked mapping is then written to an on-disk cache keyed by a
hash of the engine's checking code and of every file of the ``extends``
chain. Later processes that find a matching entry compile from it directly,
importing neither yaml nor cerberus. A changed file, a changed engine, a
corrupt or foreign entry is a miss and triggers the full check again.

The cache lives in ``$ENGINE_CACHE_DIR`` (empty: disabled), else
``$XDG_CACHE_HOME/engine``, else ``~/.cache/engine``. Entries are written
atomically (a temporary file renamed into place), so concurrent processes
never see half an entry; a read-only or missing directory only disables it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path as FsPath
from typing import Any

from ..errors import ManifestError
from .locate import (
    MAX_YAML_BYTES,
    PATH_ENV,
    RawDoc,
    find_manifest,
    id_problem,
    search_dirs,
    valid_id,
)
from .model import Manifest

__all__ = ["CACHE_ENV", "cache_dir", "clear_cache", "compile_file", "load_manifest"]

log = logging.getLogger("engine")
CACHE_ENV = "ENGINE_CACHE_DIR"
_FORMAT = "engine-manifest-cache/1"
_memory: dict[tuple[str, str], Manifest] = {}
_memory_lock = threading.Lock()
_code_digest: str | None = None


def cache_dir() -> FsPath | None:
    """Where checked manifests are cached, or None when caching is disabled."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return FsPath(value) if value else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return FsPath(base) / "engine"


def _engine_digest() -> str:
    """A hash of the code that decides what a valid manifest is (any edit is a miss)."""
    global _code_digest
    if _code_digest is None:
        digest = hashlib.sha256(_FORMAT.encode())
        here = FsPath(__file__).resolve().parent
        for name in ("schema.py", "compile.py", "check.py", "templates.py", "source.py",
                     "locate.py", "merge.py", "model.py", "paths.py", "patterns.py",
                     "operations.py"):
            try:
                digest.update((here / name).read_bytes())
            except OSError:
                digest.update(name.encode())
        _code_digest = digest.hexdigest()
    return _code_digest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_path(directory: FsPath, path: FsPath, content: bytes,
                dirs: list[FsPath] | None) -> FsPath:
    # The search path is part of the key: it decides which file an `extends` names.
    where = os.pathsep.join(str(d) for d in (dirs if dirs is not None else search_dirs()))
    key = _sha(f"{_engine_digest()}\0{path.resolve()}\0{where}\0".encode() + content)
    return directory / f"{key}.json"


def _from_cache(path: FsPath, content: bytes, dirs: list[FsPath] | None) -> Manifest | None:
    directory = cache_dir()
    if directory is None:
        return None
    try:
        entry = json.loads(_entry_path(directory, path, content, dirs).read_bytes())
        if entry.get("format") != _FORMAT:
            return None
        for name, digest in entry["files"]:
            if _sha(_head(FsPath(name)) or b"") != digest:
                return None
        data = entry["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from .compile import Problems, compile_manifest
    from .templates import deferred

    report = Problems([RawDoc(path, data, {})])
    try:
        with deferred():  # this content was checked in full when it was cached
            manifest = compile_manifest(data, report)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None  # a foreign or damaged entry: check the file again
    return None if report.problems else manifest


def _to_cache(path: FsPath, content: bytes, dirs: list[FsPath] | None, files: list[FsPath],
              data: Any) -> None:
    directory = cache_dir()
    if directory is None:
        return
    try:
        entry = {"format": _FORMAT,
                 "files": [[str(f.resolve()), _sha(_head(f) or b"")] for f in files],
                 "data": data}
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, _entry_path(directory, path, content, dirs))
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, TypeError, ValueError) as exc:
        log.debug("manifest cache not written for %s: %s", path, exc)


def compile_file(path: FsPath, dirs: list[FsPath] | None = None) -> Manifest:
    """The compiled manifest at *path*; raise ManifestError listing every problem."""
    content = _head(path)
    cached = _from_cache(path, content, dirs) if content is not None else None
    if cached is not None:
        return cached
    from .check import CheckResult, check_file  # the full check: cerberus, dry run

    try:
        result = check_file(path, dirs)
    except RecursionError:
        result = CheckResult([f"{path}:1: (top): nested too deeply to compile"])
    if result.manifest is None:
        raise ManifestError(f"invalid manifest {path}:\n" + "\n".join(result.problems),
                            problems=result.problems, provider=path.stem)
    if content is not None:
        _to_cache(path, content, dirs, result.files, result.merged)
    return result.manifest


def _head(path: FsPath) -> bytes | None:
    """The file's bytes when it is small enough to be a manifest (else the check says why)."""
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_YAML_BYTES + 1)
    except OSError:
        return None
    return content if len(content) <= MAX_YAML_BYTES else None


def load_manifest(provider: str) -> Manifest:
    """The compiled manifest for *provider*, loaded once per search path."""
    if not valid_id(provider):
        raise ManifestError(id_problem(provider, "provider"))
    memory_key = (provider, os.environ.get(PATH_ENV, ""))
    with _memory_lock:
        cached = _memory.get(memory_key)
    if cached is not None:
        return cached
    dirs = search_dirs()
    path = find_manifest(provider, dirs)
    if path is None:
        raise ManifestError(
            f"unknown provider {provider!r}: no {provider}.yaml in "
            f"{', '.join(str(d) for d in dirs)} (set {PATH_ENV} to add directories)",
            provider=provider,
        )
    manifest = compile_file(path, dirs)
    with _memory_lock:
        _memory[memory_key] = manifest
    return manifest


def clear_cache() -> None:
    """Forget loaded manifests (after editing files in a long-running process)."""
    with _memory_lock:
        _memory.clear()
