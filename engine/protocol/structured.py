"""Structured output: the answer format a request asks for, and the checked answer.

:func:`response_format` turns what a user gives ``chat.response_format(...)``
(a JSON Schema mapping, or a pydantic model class) into the plain data
templates see as ``response_format``: ``{type: json_schema, name, schema,
strict}``; ``chat.json()`` asks for ``{type: json_object}``. A schema that is
not a valid JSON Schema is refused at the call that gives it.

:func:`parse` decodes the answer of a request that asked for a format and
validates it (against the schema with ``jsonschema``; with the pydantic
model when one was given). An answer that does not parse or validate is a
``malformed_response`` error that carries the response (``partial``), so the
raw text is never lost; a valid one is ``response.parsed``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import EngineError, excerpt
from ..types import ChatRequest, ChatResponse

__all__ = ["json_object", "parse", "response_format"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _invalid(message: str) -> EngineError:
    return EngineError("invalid_request", message, retryable=False)


def _check_schema(schema: Mapping[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise _invalid(f"response_format schema is not a valid JSON Schema at {where}: "
                       f"{exc.message}") from None


def response_format(schema: Any, name: str | None, strict: bool) -> tuple[dict[str, Any], Any]:
    """(the template view of the format, the pydantic model or None)."""
    model = None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        model, schema, name = schema, schema.model_json_schema(), name or schema.__name__
    if not isinstance(schema, Mapping):
        raise _invalid(f"response_format takes a JSON Schema (a dict) or a pydantic model "
                       f"class, got {type(schema).__name__}")
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _invalid(f"response_format schema is not JSON: {exc}") from None
    _check_schema(schema)
    name = name if name is not None else str(schema.get("title") or "response")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _invalid(f"response_format name must be 1 to 64 of letters, digits, _ and -, "
                       f"got {name!r}")
    return {"type": "json_schema", "name": name, "schema": dict(schema),
            "strict": bool(strict)}, model


def json_object() -> dict[str, Any]:
    return {"type": "json_object", "name": None, "schema": None, "strict": False}


def _malformed(response: ChatResponse, why: str) -> EngineError:
    return EngineError("malformed_response", f"the answer does not match the requested "
                       f"format: {why}; the text was {excerpt(response.content, 200)!r} "
                       f"(the whole response is the error's partial)",
                       provider=response.provider or None, retryable=False, partial=response)


def parse(response: ChatResponse, request: ChatRequest) -> ChatResponse:
    """The response with ``parsed`` set, or the error of an answer that does not fit."""
    fmt = request.response_format
    if fmt is None:
        return response
    try:
        value = json.loads(response.content)
    except ValueError as exc:
        raise _malformed(response, f"not JSON ({exc})") from None
    if request.response_model is not None:
        try:
            value = request.response_model.model_validate(value)
        except Exception as exc:  # pydantic.ValidationError, without importing pydantic
            raise _malformed(response, f"{type(exc).__name__}: {exc}") from None
    elif fmt["type"] == "json_schema":
        _validate(response, value, fmt["schema"])
    elif not isinstance(value, (dict, list)):
        raise _malformed(response, f"JSON mode answered a {type(value).__name__}, not an "
                         f"object")
    return dataclasses.replace(response, parsed=value)


def _validate(response: ChatResponse, value: Any, schema: Mapping[str, Any]) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise _malformed(response, f"at {where}: {error.message}")
