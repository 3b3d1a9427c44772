"""The cerberus schema of manifest format version 1.

Unknown keys are errors everywhere except where a mapping is user data by
design (headers, the model catalogue, finish-reason maps, template trees).
Every key accepted here is interpreted by :mod:`engine.manifest`; the
``protocols/README.md`` documents each one.
"""

from __future__ import annotations

from typing import Any

from ..errors import KINDS
from ..protocol.auth import AUTH_SCHEMES as _AUTH_REGISTRY
from ..protocol.framing import FRAMERS
from ..types import FINISH_REASONS
from .model import USAGE_FIELDS

__all__ = ["AUTH_SCHEMES", "FRAMINGS", "SCHEMA", "USAGE_FIELDS"]

AUTH_SCHEMES = tuple(_AUTH_REGISTRY)
FRAMINGS = tuple(FRAMERS)

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
    },
}

_MATCH = {  # a frame matcher (used by stream end / ignore / events)
    "event": _STR_OR_LIST,
    "data": {"type": "string"},
    "when": _PATH,
}

_EVENT_RULE = {
    "type": "dict",
    "schema": {
        **_MATCH,
        "content": _PATH,
        "thinking": _PATH,
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
    },
}

_OVERRIDE = {
    "type": "dict",
    "schema": {
        "match": {"type": "string", "empty": False, "required": True},
        "body": _TREE,
        "stream_body": _TREE,
    },
}

_ERROR_RULE = {
    "type": "dict",
    "schema": {
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

_RETRY_HINT = {
    "type": "dict",
    "schema": {
        "header": {"type": "string", "empty": False, "excludes": ["path", "message_matches"]},
        "path": {**_PATH, "excludes": ["header", "message_matches"]},
        "message_matches": {"type": "string", "empty": False,
                            "excludes": ["header", "path"]},
        "unit": {"type": "string", "allowed": ["s", "ms", "auto"]},
    },
}

SCHEMA: dict[str, Any] = {
    "manifest": {"type": "integer", "allowed": [1], "required": True},
    "id": {"type": "string", "regex": r"^[a-z0-9][a-z0-9_.-]*$", "required": True},
    "name": {"type": "string"},
    "extends": {"type": "string", "empty": False},
    "base_url": {"type": "string", "regex": r"^https?://.+", "required": True},
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
        },
    },
    "capabilities": {
        "type": "dict",
        "schema": {
            "tools": {"type": "boolean"},
            "stream": {"type": "boolean"},
            "stream_errors": {"type": "boolean"},
            "tool_choice": {"type": "list", "schema": {
                "type": "string", "allowed": ["auto", "none", "required", "tool"]}},
        },
    },
    "models": {
        "type": "dict",
        "valuesrules": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "context_window": {"type": "integer", "min": 1},
                "max_output": {"type": "integer", "min": 1},
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
        "required": True,
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
    "errors": {
        "type": "dict",
        "schema": {
            "message": _PATH,
            "code": _PATH,
            "type": _PATH,
            "rules": {"type": "list", "schema": _ERROR_RULE},
            "retry_after": {"type": "list", "schema": _RETRY_HINT},
        },
    },
}
