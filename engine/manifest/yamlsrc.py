"""Safe YAML loading that remembers where every key came from.

``load_yaml(text, filename)`` returns ``(data, lines)`` where ``lines`` maps a
key path (a tuple of str keys and int list indexes) to the 1-based line of that
key in the file, so that validation can report ``file:LINE: key.path: message``.

Only the safe loader is used (libyaml's when installed). Aliases are refused
on the composed tree, before anything is constructed: a manifest never needs
them (``extends`` does that job) and they are how a "billion laughs" document
makes a loader allocate without bound. Documents are also capped in size and
nesting depth.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ManifestError
from .locate import MAX_YAML_BYTES, KeyPath, format_path

MAX_DEPTH = 64

__all__ = ["MAX_YAML_BYTES", "KeyPath", "format_path", "load_yaml"]


# libyaml when available (the pure-Python parser is about 10x slower).
_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE):  # type: ignore[misc]
    """A safe loader; aliases are detected on the composed tree (see _walk)."""


def load_yaml(text: str | bytes, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse one YAML document; raise :class:`ManifestError` with file:line on failure."""
    if isinstance(text, bytes):
        text = _decode(text, filename)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ManifestError(f"{filename}:1: (top): file is larger than {MAX_YAML_BYTES} bytes")
    if "\x00" in text:
        raise ManifestError(f"{filename}:1: (top): binary file (contains NUL bytes), not YAML")
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            lines: dict[KeyPath, int] = {}
            _walk(node, (), lines, 0, filename, set())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        line, problem = _syntax_error(exc, text)
        raise ManifestError(f"{filename}:{line}: (top): invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{filename}:1: (top): invalid YAML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{filename}:1: (top): document is nested too deeply") from None
    return data, lines


# Constructs the parser reports where they *start* (context) when it only notices
# the missing end later, often on a following line or at the end of the file.
_UNCLOSED = ("while parsing a flow", "while scanning a quoted scalar",
             "while scanning a simple key")


def _syntax_error(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """(1-based line as the file numbers it, message) for a YAML syntax error.

    An unclosed bracket, quote or key is reported at the line that opened it,
    saying where the parser gave up; anything else at the parser's position.
    A position past the last line (the end of the file) is the last line.
    """
    last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    problem = exc.problem or exc.context or "invalid YAML"
    mark, context = exc.problem_mark, exc.context_mark
    if context is not None and (exc.context or "").startswith(_UNCLOSED):
        where = "the end of the file" if mark is None or mark.line + 1 > last else (
            f"line {mark.line + 1}, column {mark.column + 1}")
        return min(context.line + 1, last), f"{exc.context} that starts here: {problem} " \
                                             f"(at {where})"
    mark = mark or context
    return (min(mark.line + 1, last) if mark is not None else 1), problem


def _decode(raw: bytes, filename: str) -> str:
    if b"\x00" in raw:
        raise ManifestError(f"{filename}:1: (top): binary file (contains NUL bytes), not YAML")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{filename}:1: (top): not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], depth: int,
          filename: str, seen: set[int]) -> None:
    line = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise ManifestError(f"{filename}:{line}: {format_path(path)}: nested deeper than "
                            f"{MAX_DEPTH} levels")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        # An alias makes the composer reuse a node: refuse it before anything
        # expands it (the "billion laughs" shape).
        if id(node) in seen:
            raise ManifestError(f"{filename}:{line}: {format_path(path)}: YAML aliases are "
                                "not allowed in manifests")
        seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = (*path, key)
            if sub in lines:
                raise ManifestError(f"{filename}:{key_node.start_mark.line + 1}: "
                                    f"{format_path(sub)}: duplicate key")
            lines[sub] = key_node.start_mark.line + 1
            _walk(value_node, sub, lines, depth + 1, filename, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            sub = (*path, index)
            lines.setdefault(sub, item.start_mark.line + 1)
            _walk(item, sub, lines, depth + 1, filename, seen)
