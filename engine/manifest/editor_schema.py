"""The JSON Schema of the manifest format, generated from the validation schema.

Editors (through ``# yaml-language-server: $schema=./manifest.schema.json`` as
a manifest's first line) complete keys and flag unknown ones with it; the
validator remains the judge (it also compiles every template and expression).
One source of truth: :func:`json_schema` converts :data:`~.schema.SCHEMA`
(cerberus) rule by rule, and ``protocols/manifest.schema.json`` is its output,
written by ``python -m engine.manifest.editor_schema protocols/manifest.schema.json``;
a test fails when the file and the schema drift apart.

Two variants share the rules: a manifest with ``extends`` states only its
differences, so nothing is required in it; the lists of
:data:`~.schema.NAMED_LISTS` accept the patch form (a mapping of item name to
a change, ``null`` to remove it, ``$before``/``$after`` to place a new one).
Field exclusions (``excludes``) become ``dependentSchemas``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .locate import KeyPath
from .merge import PLACE_KEYS
from .schema import NAME_PATTERN, NAMED_LISTS, SCHEMA

__all__ = ["SCHEMA_ID", "json_schema", "main", "render"]

SCHEMA_ID = "https://engine.invalid/manifest.schema.json"  # a name, never fetched
_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number",
          "float": "number", "dict": "object", "list": "array"}


def _anchored(pattern: str) -> str:
    """Cerberus matches a regex against the whole value; JSON Schema searches."""
    return pattern if pattern.startswith("^") and pattern.endswith("$") else f"^(?:{pattern})$"


def _types(rule: Mapping[str, Any]) -> list[str]:
    raw = rule.get("type")
    names = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
    out = [_TYPES[name] for name in names]
    # A child file deletes any inherited key with null, and the file alone does not
    # say whether it is a child: null is accepted everywhere (the validator judges).
    if out:
        out.append("null")
    return out


def _rule(rule: Mapping[str, Any], path: KeyPath, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    types = _types(rule)
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    if "allowed" in rule:
        out["enum"] = list(rule["allowed"])
    if "regex" in rule:
        out["pattern"] = _anchored(rule["regex"])
    if rule.get("empty") is False:
        out.update(_non_empty(types))
    for name, key in (("min", "minimum"), ("max", "maximum")):
        if name in rule:
            out[key] = rule[name]
    children = _children(rule, path, full)
    if "anyOf" in children:  # a named list: the list itself, or a patch of it
        return children
    out.update(children)
    if types:  # the container's own types, null included, over _fields' "object"
        out["type"] = types[0] if len(types) == 1 else types
    return out


def _non_empty(types: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "string" in types:
        out["minLength"] = 1
    if "object" in types:
        out["minProperties"] = 1
    if "array" in types:
        out["minItems"] = 1
    return out


def _children(rule: Mapping[str, Any], path: KeyPath, full: bool) -> dict[str, Any]:
    types = _types(rule)
    inner = rule.get("schema")
    out: dict[str, Any] = {}
    if "object" in types and isinstance(inner, Mapping):
        out.update(_fields(inner, path, full))
    if "array" in types and isinstance(inner, Mapping):
        out["items"] = _rule(inner, (*path, 0), full)
    if "keysrules" in rule:
        out["propertyNames"] = _rule(rule["keysrules"], path, full)
    if "valuesrules" in rule:
        out["additionalProperties"] = _rule(rule["valuesrules"], (*path, "*"), full)
    if path in NAMED_LISTS and isinstance(inner, Mapping):
        return {"anyOf": [{"type": "array", "items": out.get("items", {})},
                          _patch(inner, path)]}
    return out


def _fields(fields: Mapping[str, Any], path: KeyPath, full: bool) -> dict[str, Any]:
    properties = {name: _rule(sub, (*path, name), full) for name, sub in fields.items()}
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": False}
    required = [name for name, sub in fields.items() if sub.get("required")]
    if required and full:
        out["required"] = required
    excludes = {name: sub["excludes"] for name, sub in fields.items() if "excludes" in sub}
    if excludes:
        out["dependentSchemas"] = {
            name: {"not": {"anyOf": [{"required": [other]} for other in others]}}
            for name, others in excludes.items()}
    return out


def _patch(item: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
    """The patch form of a named list: name -> a change (nothing required) or null."""
    change = _rule(item, (*path, 0), full=False)
    kinds = change.get("type")
    if kinds == "object" or (isinstance(kinds, list) and "object" in kinds):
        change["properties"] = {**change.get("properties", {}),
                                **{key: {"type": "string", "pattern": f"^{NAME_PATTERN}$"}
                                   for key in PLACE_KEYS}}
    return {"type": "object", "propertyNames": {"pattern": f"^{NAME_PATTERN}$"},
            "additionalProperties": {"anyOf": [{"type": "null"}, change]}}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a manifest file."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "engine provider manifest",
        "description": "Generated from engine/manifest/schema.py by "
                       "python -m engine.manifest.editor_schema; see protocols/README.md.",
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/child"},
        "else": {"$ref": "#/$defs/complete"},
        "$defs": {"complete": _fields(SCHEMA, (), full=True),
                  "child": _fields(SCHEMA, (), full=False)},
    }


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m engine.manifest.editor_schema [OUTPUT.json]", file=sys.stderr)
        return 2
    text = render()
    if not args:
        sys.stdout.write(text)
        return 0
    try:
        with open(args[0], "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        print(f"cannot write {args[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
