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

A manifest without the native mode asked for may emulate it
(``capabilities.response_format_fallback: tool``): :func:`emulated` sends the
request with one forced tool whose parameters are the schema (``{type:
object}`` for JSON mode), :class:`AnswerTool` turns that tool's argument
deltas into content deltas as a stream goes, and :func:`unwrapped` makes the
answer's text the tool's arguments, so :func:`parse` and the caller see a
plain answer. Such a request cannot also carry tools or a tool choice.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import EngineError, excerpt
from ..events import ContentDelta, Finished, StreamEvent, ThinkingDelta
from ..manifest.model import Manifest
from ..types import ChatRequest, ChatResponse, Tool, ToolCall

__all__ = ["AnswerTool", "answer_tool", "emulated", "json_object", "parse", "response_format",
           "unwrapped"]

ANSWER_TOOL = "json_answer"  # the forced tool's name in JSON mode (a schema has its own)
_DESCRIPTION = "Give your answer by calling this tool: its arguments are the whole answer."

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


# ---------------------------------------------------------------- emulation by a tool

def answer_tool(request: ChatRequest, manifest: Manifest) -> str | None:
    """The name of the forced tool that carries the answer for *manifest*, or None when
    the manifest sends the requested format natively (or none was asked for)."""
    fmt = request.response_format
    if (fmt is None or fmt["type"] in manifest.response_formats
            or manifest.response_format_fallback != "tool"):
        return None
    return str(fmt["name"] or ANSWER_TOOL)


def emulated(request: ChatRequest, manifest: Manifest) -> ChatRequest:
    """*request* as *manifest* sends it: a format it lacks as one forced tool call."""
    name = answer_tool(request, manifest)
    fmt = request.response_format
    if name is None or fmt is None:
        return request
    if request.tools or request.tool_choice is not None:
        raise EngineError("invalid_request", f"{manifest.id} has no native "
                          f"{fmt['type']} mode and emulates it with a "
                          f"forced tool call, which cannot be combined with tools or "
                          f"tool_choice", provider=manifest.id, retryable=False)
    allowed = manifest.reasoning_tool_choice
    if request.reasoning is not None and allowed is not None and "tool" not in allowed:
        raise EngineError("invalid_request", f"{manifest.id} emulates a {fmt['type']} answer "
                          f"with a forced tool call, which it refuses alongside reasoning; "
                          f"drop .reasoning() or the answer format", provider=manifest.id,
                          retryable=False)
    schema = fmt["schema"] if fmt["schema"] is not None else {"type": "object"}
    tool = Tool(name, _DESCRIPTION, schema, strict=True if fmt["strict"] else None)
    return dataclasses.replace(request, tools=(tool,), tool_choice={"name": name},
                               response_format=None, parallel_tool_calls=None)


def unwrapped(response: ChatResponse, name: str) -> ChatResponse:
    """The answer whose text is the arguments of the *name* tool call; text the model
    wrote beside the call (a preamble) is kept as thinking, as the stream gave it."""
    call = next((c for c in response.tool_calls if c.name == name), None)
    if call is None:
        if response.content:  # a model that answered in text anyway: parse() judges it
            return response
        raise _malformed(response, f"the model did not call the {name!r} tool that "
                         f"carries the answer")
    text = _arguments_text(call)
    finish = "stop" if response.finish_reason == "tool_calls" else response.finish_reason
    thinking = (response.thinking or "") + response.content or response.thinking
    return dataclasses.replace(response, content=text, thinking=thinking, tool_calls=[],
                               finish_reason=finish, replay=())


def _arguments_text(call: ToolCall) -> str:
    """The arguments as the provider wrote them, else as JSON (non-ASCII kept)."""
    if call.raw_arguments is not None:
        return call.raw_arguments
    return json.dumps(call.arguments, ensure_ascii=False)


class AnswerTool:
    """Stream events with the answer tool's argument text as content deltas.

    The tool's start and end events are dropped; its argument fragments become
    :class:`ContentDelta`; a call whose arguments came whole (no fragments) gives
    one delta at its end; text the model writes beside the call becomes
    :class:`ThinkingDelta` (the content deltas are the answer alone); a
    ``tool_calls`` finish becomes ``stop``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.index: int | None = None
        self.streamed = False

    def __call__(self, events: list[StreamEvent]) -> list[StreamEvent]:
        return [out for event in events if (out := self._one(event)) is not None]

    def _one(self, event: StreamEvent) -> StreamEvent | None:
        if event.is_tool_call_started:
            started = event.as_tool_call_started
            if started.name == self.name and self.index is None:
                self.index = started.index
                return None
        elif event.is_tool_call_delta and event.as_tool_call_delta.index == self.index:
            self.streamed = True
            return StreamEvent(ContentDelta(event.as_tool_call_delta.arguments))
        elif event.is_tool_call_ended and event.as_tool_call_ended.index == self.index:
            if self.streamed:
                return None
            return StreamEvent(ContentDelta(_arguments_text(event.as_tool_call_ended.tool_call)))
        elif event.is_content_delta:
            return StreamEvent(ThinkingDelta(event.as_content_delta.text))
        elif event.is_finished and event.as_finished.finish_reason == "tool_calls":
            return StreamEvent(Finished("stop"))
        return event
