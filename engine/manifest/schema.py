"""The cerberus schema of manifest format version 1, and a linear walk over it.

Unknown keys are errors everywhere except where a mapping is user data by
design (headers, the model catalogue, finish-reason maps, template trees).
Every key accepted here is interpreted by :mod:`engine.manifest`; the
``protocols/README.md`` documents each one.

:func:`shape` walks a document along :data:`SCHEMA` once, in time linear in
its size, and returns what cerberus should see and what it need not: the
document without its unknown keys (each listed with the keys allowed at that
place, for a "did you mean"), every container of user-sized length (a list, a
user-data mapping) cut to :data:`CHUNK` entries with the rest as separate
:class:`Piece` s, and the string values outside their ``allowed`` list. Cerberus
sorts its whole error list on every error it adds (quadratic in the number of
errors), so it is only ever handed pieces of bounded size. :func:`suggest`
words the "did you mean". Pure: no cerberus, no I/O.

The lists of :data:`NAMED_LISTS` (every list of mappings) take an optional
``name`` on each item (:data:`NAME_PATTERN`), its identity for a child that
changes it by name. A file may write such a list as a mapping of name to
change (a patch, merged by :mod:`.source`); :func:`shape` checks a patch as
the list of the items its changes describe, ``$before``/``$after`` left out,
and :meth:`Shaped.file_key` turns a key of that list back into the file's
(``errors.rules.<name>...``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import KINDS
from ..parts import MEDIA_TYPES
from ..protocol.auth import AUTH_SCHEMES as _AUTH_REGISTRY
from ..protocol.framing import FRAMERS
from ..types import FINISH_REASONS
from .locate import NAME_PATTERN, KeyPath
from .merge import PLACE_KEYS
from .model import INPUT_TYPES, MODEL_CAPABILITIES, RATE_LIMIT_FIELDS, USAGE_FIELDS

__all__ = ["AUTH_SCHEMES", "CHUNK", "FRAMINGS", "NAMED_LISTS", "NAME_PATTERN", "SCHEMA",
           "SETTING_NAME",
           "USAGE_FIELDS", "Piece", "Shaped", "shape", "suggest"]

AUTH_SCHEMES = tuple(_AUTH_REGISTRY)
FRAMINGS = tuple(FRAMERS)
PART_KINDS = tuple(MEDIA_TYPES)

# The lists whose items may be named, so that a child changes one by name (see
# :func:`~engine.manifest.merge.patch_list`): every list of mappings in SCHEMA.
NAMED_LISTS: tuple[KeyPath, ...] = (
    ("chat", "overrides"),
    ("chat", "stream", "end"),
    ("chat", "stream", "ignore"),
    ("chat", "stream", "events"),
    ("errors", "rules"),
    ("errors", "retry_after"),
    *((op, "errors", name) for op in ("embed", "list_models", "count_tokens")
      for name in ("rules", "retry_after")),
)

_NAME = {"type": "string", "regex": f"^{NAME_PATTERN}$"}
_ENV_NAME = {"type": "string", "regex": r"^[A-Za-z_][A-Za-z0-9_]*$"}
# A client setting's name, as templates see it (settings.<name>).
SETTING_NAME = r"[a-z][a-z0-9_]{0,31}"
_PATH = {"type": "string", "empty": False}
_TREE: dict[str, Any] = {"nullable": True}  # a template tree: checked by compiling it
_STR_OR_LIST = {"type": ["string", "list"], "schema": {"type": "string"}}
_USAGE = {"type": "dict", "schema": {name: _PATH for name in USAGE_FIELDS}}

_TOOL_CALL = {
    "type": "dict",
    "schema": {
        "each": _PATH,
        "key": _PATH,
        "id": _PATH,
        "name": _PATH,
        "arguments": _PATH,
        "extra": {"type": "dict", "valuesrules": _PATH},
        "complete": {"type": "boolean"},
        # only continue a call an earlier frame started (fragments of other blocks, e.g.
        # a provider's own server-side tool, are dropped)
        "continues": {"type": "boolean"},
    },
}

_MATCH = {  # a frame matcher (used by stream end / ignore / events)
    "name": _NAME,
    "event": _STR_OR_LIST,
    "data": {"type": "string"},
    "when": _PATH,
}

# Fields of a replay block: a dotted field name -> a path to the value.
_FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
_FIELDS = {"type": "dict", "empty": False,
           "keysrules": {"type": "string", "regex": _FIELD_NAME}, "valuesrules": _PATH}

# What a frame adds to the answer kept for replay (ChatResponse.replay): whole
# items (`items`), or a block assembled under `key` from a `start` object and
# text appended to its fields (`append`; `append_json`: parsed once at the end;
# `push`: items added to a list field). Blocks are kept in order of first touch.
_REPLAY = {
    "type": "dict",
    "schema": {
        "items": {**_PATH, "excludes": ["key", "start", "append", "append_json", "push"]},
        "key": _PATH,
        "start": _PATH,
        "append": _FIELDS,
        "append_json": _FIELDS,
        "push": _FIELDS,
    },
}

_EVENT_RULE = {
    "type": "dict",
    "schema": {
        **_MATCH,
        "content": _PATH,
        "thinking": _PATH,
        "replay": _REPLAY,
        "tool_call": _TOOL_CALL,
        "tool_call_end": {"type": "dict", "schema": {"key": {**_PATH, "required": True}}},
        "finish_reason": _PATH,
        "usage": _USAGE,
        "error": {
            "type": "dict",
            "schema": {"message": _PATH, "code": _PATH, "type": _PATH, "status": _PATH},
        },
        "end": {"type": "boolean"},
    },
}

_STREAM = {
    "type": "dict",
    "schema": {
        "path": {"type": "string"},
        "query": _TREE,
        "body": _TREE,
        "headers": {"type": "dict", "valuesrules": {"type": "string"}},
        "framing": {"type": "string", "allowed": list(FRAMINGS)},
        "end": {"type": "list", "schema": {"type": "dict", "schema": _MATCH}},
        "eof_ok": {"type": "boolean"},
        "ignore": {"type": "list", "schema": {"type": "dict", "schema": _MATCH}},
        "events": {"type": "list", "schema": _EVENT_RULE},
    },
}

_RESPONSE = {
    "type": "dict",
    "schema": {
        "content": _PATH,
        "thinking": _PATH,
        "tool_calls": _PATH,
        "finish_reason": _PATH,
        "usage": _USAGE,
        "error": _PATH,
        # the answer as the provider needs it back (a list, kept verbatim)
        "replay": _PATH,
    },
}

_CAPABILITIES: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "tools": {"type": "boolean"},
        "stream": {"type": "boolean"},
        "stream_errors": {"type": "boolean"},
        # message parts the templates render, by kind, with the sources each takes;
        # fetch: a URL part is downloaded by the engine and sent as data
        "parts": {"type": "dict",
                  "keysrules": {"type": "string", "allowed": list(PART_KINDS)},
                  "valuesrules": {"type": "list", "empty": False, "schema": {
                      "type": "string", "allowed": ["url", "data", "fetch"]}}},
        # per kind: the largest part the provider takes (bytes before base64) and
        # the media types it takes as bytes
        "part_limits": {"type": "dict",
                        "keysrules": {"type": "string", "allowed": list(PART_KINDS)},
                        "valuesrules": {"type": "dict", "schema": {
                            "max_bytes": {"type": "integer", "min": 1},
                            "media_types": {"type": "list", "empty": False, "schema": {
                                "type": "string",
                                "regex": r"^[a-z]+/[a-z0-9.+-]+$"}}}}},
        # whether chat.parallel_tool_calls(False) can be expressed
        "parallel_tool_calls": {"type": "boolean"},
        # whether a developer message is the provider's own role (else it is sent
        # as a system message)
        "developer_role": {"type": "boolean"},
        # whether the templates send a provider's own tool entries (Tool.native)
        "native_tools": {"type": "boolean"},
        # marks: the templates render cache marks; automatic: the provider caches
        # by itself (marks are accepted and need nothing); none: marks are refused
        "prompt_cache": {"type": "string", "allowed": ["marks", "automatic", "none"]},
        # the reasoning controls chat.reasoning(...) may use, and the params the
        # API refuses alongside reasoning
        "reasoning": {"type": "list", "schema": {
            "type": "string", "allowed": ["effort", "budget_tokens", "adaptive", "summary"]}},
        "reasoning_excludes": {"type": "list", "schema": {
            "type": "string", "allowed": ["temperature", "top_p", "top_k", "stop", "seed"]}},
        # the tool_choice modes the API takes alongside reasoning (default: all it takes)
        "reasoning_tool_choice": {"type": "list", "schema": {
            "type": "string", "allowed": ["auto", "none", "required", "tool"]}},
        # the answer formats chat.response_format / chat.json can ask for
        "response_format": {"type": "list", "schema": {
            "type": "string", "allowed": ["json_schema", "json_object"]}},
        # how a format not listed above is emulated: tool, a forced call of one tool
        # whose parameters are the schema and whose arguments are the answer
        "response_format_fallback": {"type": "string", "allowed": ["tool"]},
        "tool_choice": {"type": "list", "schema": {
            "type": "string", "allowed": ["auto", "none", "required", "tool"]}},
    },
}


def _nullable(rule: dict[str, Any]) -> dict[str, Any]:
    """*rule* also taking null (a merge layer removes a key with it), in its values too."""
    out = {**rule, "nullable": True}
    if "valuesrules" in rule:
        out["valuesrules"] = {**rule["valuesrules"], "nullable": True}
    return out


# What an override may change for the models it matches (stream framing is not per
# model); merged over the top-level section, where null removes a key.
_MODEL_CAPABILITIES = {"type": "dict", "schema": {
    k: _nullable(v) for k, v in _CAPABILITIES["schema"].items()
    if k not in ("stream", "stream_errors")}}


_OVERRIDE = {
    "type": "dict",
    "schema": {
        "name": _NAME,
        "match": {"type": "string", "empty": False, "required": True},
        "body": _TREE,
        "stream_body": _TREE,
        # merged over the top-level capabilities for the models this override matches
        "capabilities": _MODEL_CAPABILITIES,
    },
}

_ERROR_RULE = {
    "type": "dict",
    "schema": {
        "name": _NAME,
        "status": {"type": ["integer", "list"], "schema": {"type": "integer"}},
        "code": {"type": ["string", "integer", "list"]},
        "type": _STR_OR_LIST,
        "message_matches": {"type": "string", "empty": False},
        "headers": {"type": "dict", "empty": False,
                    "keysrules": {"type": "string", "regex": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"},
                    "valuesrules": {"type": "string", "empty": False}},
        "kind": {"type": "string", "allowed": sorted(KINDS)},
        "retryable": {"type": "boolean"},
        "retry": {"type": "string", "allowed": ["always", "never"]},
    },
}

# A response header, or several in order of preference.
_HEADER_NAME = {"type": "string", "regex": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}
_HEADER_NAMES = {"type": ["string", "list"], "schema": _HEADER_NAME, "empty": False}

_RETRY_HINT = {
    "type": "dict",
    "schema": {
        "name": _NAME,
        "header": {"type": "string", "empty": False, "excludes": ["path", "message_matches"]},
        "path": {**_PATH, "excludes": ["header", "message_matches"]},
        "message_matches": {"type": "string", "empty": False,
                            "excludes": ["header", "path"]},
        "unit": {"type": "string", "allowed": ["s", "ms", "auto"]},
    },
}

_ERRORS = {
    "type": "dict",
    "schema": {
        "message": _PATH,
        "code": _PATH,
        "type": _PATH,
        "rules": {"type": "list", "schema": _ERROR_RULE},
        "retry_after": {"type": "list", "schema": _RETRY_HINT},
    },
}

# Where one operation's request goes; its errors section overrides the top-level one
# (its rules are tried first, its paths replace the top-level ones it gives).
_ENDPOINT = {
    "method": {"type": "string", "allowed": ["POST", "PUT", "GET"]},
    "path": {"type": "string", "required": True},
    "query": _TREE,
    "errors": _ERRORS,
}

_EMBED = {
    "type": "dict",
    "schema": {
        **_ENDPOINT,
        "body": {**_TREE, "required": True},
        # the most texts one request may carry; a longer list is split across requests
        "max_inputs": {"type": "integer", "min": 1, "max": 100000},
        # whether the body sends dimensions (embed(dimensions=...) is refused otherwise)
        "dimensions": {"type": "boolean"},
        # embed(input_type=...) -> the provider's word for it; absent: refused
        "input_types": {"type": "dict", "keysrules": {"type": "string",
                                                      "allowed": list(INPUT_TYPES)},
                        "valuesrules": {"type": "string", "empty": False}},
        # whether an empty text may be sent (most providers refuse one)
        "allow_empty": {"type": "boolean"},
        "response": {"type": "dict", "required": True, "schema": {
            "vectors": {**_PATH, "required": True},
            "index": _PATH,
            "model": _PATH,
            "usage": {"type": "dict", "schema": {"prompt_tokens": _PATH,
                                                 "total_tokens": _PATH}},
        }},
    },
}

_LIST_MODELS = {
    "type": "dict",
    "schema": {
        **_ENDPOINT,
        "response": {"type": "dict", "required": True, "schema": {
            "models": {**_PATH, "required": True},
            "id": {**_PATH, "required": True},
            "context_window": _PATH,
            "max_output": _PATH,
            "capabilities": {"type": "dict",
                             "keysrules": {"type": "string",
                                           "allowed": list(MODEL_CAPABILITIES)},
                             "valuesrules": _PATH},
        }},
        # pagination: the next page's cursor (the query template reads {{ cursor }}),
        # whether there is a next page, and the most pages one listing reads
        "pages": {"type": "dict", "schema": {
            "next": {**_PATH, "required": True},
            "more": _PATH,
            "max_pages": {"type": "integer", "min": 1, "max": 10000},
        }},
    },
}

_COUNT_TOKENS = {
    "type": "dict",
    "schema": {
        **_ENDPOINT,
        # merged over the chat body (null removes a key), then put under `wrap` (a key,
        # or a dotted path of keys)
        "body": _TREE,
        "wrap": {"type": "string", "regex": r"^[^.]+(\.[^.]+)*$"},
        "response": {"type": "dict", "required": True, "schema": {
            "tokens": {**_PATH, "required": True},
        }},
    },
}

SCHEMA: dict[str, Any] = {
    "manifest": {"type": "integer", "allowed": [1], "required": True},
    "id": {"type": "string", "required": True},  # its form: locate.valid_id, in check
    "name": {"type": "string"},
    "extends": {"type": "string", "empty": False},
    # A template string may fill parts of it from settings ({{ settings.name }}).
    "base_url": {"type": "string", "regex": r"^https?://.+", "required": True},
    "settings": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": f"^{SETTING_NAME}$"},
        "valuesrules": {
            "type": "dict",
            "schema": {
                "env": {"type": "list", "schema": _ENV_NAME},
                "default": {"type": "string"},
                "required": {"type": "boolean"},
                "pattern": {"type": "string", "empty": False},
                "description": {"type": "string"},
                # a valid value, used where some value must be rendered (the dry run)
                "example": {"type": "string", "empty": False},
            },
        },
    },
    "response_headers": {
        "type": "dict",
        "schema": {
            "request_id": _HEADER_NAMES,
            "rate_limit": {"type": "dict",
                           "schema": {name: _HEADER_NAMES for name in RATE_LIMIT_FIELDS}},
        },
    },
    "base_url_env": {"type": "list", "schema": {"type": "string",
                                                "regex": r"^[A-Za-z_][A-Za-z0-9_]*$"}},
    "headers": {"type": "dict", "valuesrules": {"type": "string"}},
    "auth": {
        "type": "dict",
        "required": True,
        "schema": {
            "scheme": {"type": "string", "allowed": list(AUTH_SCHEMES), "required": True},
            "header": {"type": "string", "empty": False},
            "prefix": {"type": "string"},
            "param": {"type": "string", "empty": False},
            "env": {"type": "list",
                    "schema": {"type": "string", "regex": r"^[A-Za-z_][A-Za-z0-9_]*$"}},
            "required": {"type": "boolean"},
            # bearer-token: the command (argv, no shell) that prints a token, and how
            # long one is reused
            "command": {"type": "list", "empty": False,
                        "schema": {"type": "string", "empty": False}},
            "lifetime": {"type": "number", "min": 60, "max": 86400},
            # bearer-token: or a token from application-default credentials, for scopes
            "credentials": {"type": "string", "allowed": ["application-default"]},
            # the importable credentials library that provides them, and the package
            # extra that installs it (named in the error when it is missing)
            "library": {"type": "string", "regex": r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$"},
            "extra": {"type": "string", "regex": r"^[a-z0-9_-]+$"},
            "scopes": {"type": "list", "empty": False, "schema": {"type": "string",
                                                                  "empty": False}},
            # aws-sigv4: the signing service name, and the region (a template over settings)
            "service": {"type": "string", "regex": r"^[a-z0-9-]+$"},
            "region": {"type": "string", "empty": False},
        },
    },
    "capabilities": _CAPABILITIES,
    "models": {
        "type": "dict",
        "valuesrules": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "context_window": {"type": "integer", "min": 1},
                "max_output": {"type": "integer", "min": 1},
                # USD per million tokens, as the provider publishes them.
                "input_price": {"type": "number", "min": 0},
                "output_price": {"type": "number", "min": 0},
                "cached_input_price": {"type": "number", "min": 0},
                "capabilities": {"type": "list", "schema": {
                    "type": "string", "allowed": list(MODEL_CAPABILITIES)}},
            },
        },
    },
    "retry": {
        "type": "dict",
        "schema": {
            "max_retries": {"type": "integer", "min": 0, "max": 20},
            "retry_on": {"type": "list", "schema": {"type": "string", "allowed": sorted(KINDS)}},
            "backoff_base": {"type": "number", "min": 0, "max": 60},
            "backoff_max": {"type": "number", "min": 0, "max": 600},
            "honor_retry_after": {"type": "boolean"},
            "max_retry_after": {"type": "number", "min": 0, "max": 3600},
        },
    },
    "chat": {
        "type": "dict",
        "schema": {
            "method": {"type": "string", "allowed": ["POST", "PUT", "GET"]},
            "path": {"type": "string", "required": True},
            "query": _TREE,
            "body": {**_TREE, "required": True},
            "response": {**_RESPONSE, "required": True},
            "stream": _STREAM,
            "overrides": {"type": "list", "schema": _OVERRIDE},
            "message": {"type": "dict",
                        "keysrules": {"type": "string", "allowed": [
                            "system", "user", "assistant", "tool", "default"]},
                        "valuesrules": _TREE},
        },
    },
    "finish_reasons": {
        "type": "dict",
        "valuesrules": {"type": "string", "allowed": sorted(FINISH_REASONS)},
    },
    "embed": _EMBED,
    "list_models": _LIST_MODELS,
    "count_tokens": _COUNT_TOKENS,
    "errors": _ERRORS,
}


# ---------------------------------------------------------------- the walk

CHUNK = 16  # entries of one list or user-data mapping handed to cerberus at once


@dataclass(frozen=True)
class Piece:
    """Entries of the container at *path* beyond the first :data:`CHUNK`, validated on
    their own against the container's *rule*; list indexes start at *offset*."""

    path: KeyPath
    rule: Mapping[str, Any]
    value: Any
    offset: int = 0


@dataclass
class Shaped:
    """A document as :func:`shape` leaves it for cerberus."""

    doc: dict[Any, Any] = field(default_factory=dict)  # no unknown keys, containers cut
    unknown: list[tuple[KeyPath, tuple[str, ...]]] = field(default_factory=list)  # + allowed
    pieces: list[Piece] = field(default_factory=list)  # the rest of each cut container
    allowed: dict[KeyPath, tuple[str, ...]] = field(default_factory=dict)  # value not in these
    names: dict[KeyPath, list[str]] = field(default_factory=dict)  # a patch's keys, in order

    def file_key(self, key: KeyPath) -> KeyPath:
        """*key* as the file writes it: an item of a patch by its name, not its index."""
        for path, names in self.names.items():
            at = len(path)
            step = key[at] if key[:at] == path and len(key) > at else None
            if isinstance(step, int) and 0 <= step < len(names):
                return (*path, names[step], *key[at + 1:])
        return key


def suggest(word: object, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the one of *allowed* closest to *word*, or ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def shape(doc: Mapping[Any, Any], schema: Mapping[str, Any] = SCHEMA) -> Shaped:
    """Walk *doc* along *schema* once (see the module docstring)."""
    out = Shaped()
    out.doc = _fields(doc, schema, (), out)
    return out


def _types(rule: Mapping[str, Any]) -> set[str]:
    kind = rule.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _value(value: Any, rule: Mapping[str, Any], path: KeyPath, out: Shaped) -> Any:
    types = _types(rule)
    if isinstance(value, dict) and "list" in types and path in NAMED_LISTS:
        # A patch (name -> change) is checked as the list of its changes, each named.
        out.names[path] = [str(key) for key in value]
        value = [_as_item(key, item) for key, item in value.items()]
    if isinstance(value, dict) and "dict" in types:
        if "schema" in rule:
            return _fields(value, rule["schema"], path, out)
        return _entries(value, rule, path, out)
    if isinstance(value, list) and "list" in types and "schema" in rule:
        items = [_value(v, rule["schema"], (*path, i), out) for i, v in enumerate(value)]
        return _cut(items, rule, path, out)
    if isinstance(value, str) and "allowed" in rule and value not in rule["allowed"]:
        out.allowed[path] = tuple(rule["allowed"])
    return value


def _as_item(key: Any, change: Any) -> Any:
    """One change of a patch as the item it describes (its placement is the merge's)."""
    if not isinstance(change, Mapping):
        return change
    return {**{k: v for k, v in change.items() if k not in PLACE_KEYS}, "name": str(key)}


def _fields(value: Mapping[Any, Any], schema: Mapping[str, Any], path: KeyPath,
            out: Shaped) -> dict[Any, Any]:
    """A mapping with a fixed set of keys: the others are unknown."""
    kept: dict[Any, Any] = {}
    for key, item in value.items():
        rule = schema.get(key) if isinstance(key, str) else None
        if rule is None:
            out.unknown.append(((*path, key), tuple(schema)))
        else:
            kept[key] = _value(item, rule, (*path, key), out)
    return kept


def _entries(value: Mapping[Any, Any], rule: Mapping[str, Any], path: KeyPath,
             out: Shaped) -> Any:
    """A user-data mapping; keys outside a ``keysrules`` allowed list are unknown keys."""
    names = (rule.get("keysrules") or {}).get("allowed")
    values = rule.get("valuesrules")
    kept: dict[Any, Any] = {}
    for key, item in value.items():
        if names is not None and key not in names:
            out.unknown.append(((*path, key), tuple(names)))
        else:
            kept[key] = _value(item, values, (*path, key), out) if values else item
    return _cut(kept, rule, path, out)


def _cut(container: Any, rule: Mapping[str, Any], path: KeyPath, out: Shaped) -> Any:
    if len(container) <= CHUNK:
        return container
    if isinstance(container, dict):
        items = list(container.items())
        out.pieces.extend(Piece(path, rule, dict(items[start:start + CHUNK]))
                          for start in range(CHUNK, len(items), CHUNK))
        return dict(items[:CHUNK])
    out.pieces.extend(Piece(path, rule, container[start:start + CHUNK], start)
                      for start in range(CHUNK, len(container), CHUNK))
    return container[:CHUNK]
