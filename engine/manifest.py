"""Find, load, merge, validate and compile provider manifests.

Pipeline: :func:`find_manifest` locates ``<id>.yaml`` in the search path
(``AI_PROTOCOL_PATH`` directories first, then the built-in ``protocols/``);
:func:`resolve` loads it and its ``extends`` chain (depth-limited, cycles
refused) and deep-merges them (a ``null`` in a child deletes the key);
:func:`check` validates every file and the merged result and compiles every
template, JMESPath expression and regex, collecting *all* problems as
``file:line: key.path: message``; :func:`compile_manifest` turns the merged
mapping into frozen :class:`Manifest` objects that the hot path uses without
ever re-parsing anything. :func:`load_manifest` does all of it once per id.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import cerberus

from .errors import DEFAULT_RETRYABLE, ManifestError
from .paths import Path, PathError, compile_path
from .patterns import Pattern, PatternError, compile_pattern
from .schema import SCHEMA, USAGE_FIELDS
from .templates import Node, TemplateError, compile_tree
from .yamlsrc import MAX_YAML_BYTES, KeyPath, format_path, load_yaml

__all__ = [
    "MAX_EXTENDS_DEPTH",
    "AuthSpec",
    "ChatSpec",
    "ErrorRule",
    "ErrorSpec",
    "EventRule",
    "Manifest",
    "Matcher",
    "ResponseSpec",
    "RetryHint",
    "RetrySpec",
    "StreamSpec",
    "ToolCallRule",
    "builtin_dir",
    "check",
    "find_manifest",
    "load_manifest",
    "resolve",
    "search_dirs",
]

MAX_EXTENDS_DEPTH = 8
TOOL_CHOICE_MODES = frozenset({"auto", "none", "required", "tool"})
PATH_ENV = "AI_PROTOCOL_PATH"


# ---------------------------------------------------------------- discovery

def builtin_dir() -> FsPath:
    """The manifests shipped with the package (or the repository's, in development)."""
    here = FsPath(__file__).resolve().parent
    packaged = here / "_protocols"
    return packaged if packaged.is_dir() else here.parent / "protocols"


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
            if candidate.is_file() and (exclude is None or not _same(candidate, exclude)):
                return candidate
    return None


def _same(a: FsPath, b: FsPath) -> bool:
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


def deep_merge(base: Any, over: Any) -> Any:
    """Merge *over* onto *base*: mappings recursively, ``None`` deletes, others replace."""
    if not (isinstance(base, Mapping) and isinstance(over, Mapping)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(path: FsPath, dirs: list[FsPath] | None = None) -> tuple[dict[str, Any], list[RawDoc]]:
    """Load *path* and its ``extends`` chain; return (merged data, chain child-first)."""
    chain = [load_raw(path)]
    while True:
        doc = chain[-1]
        parent = doc.data.get("extends")
        if parent is None:
            break
        where = f"{doc.path}:{doc.line_of(('extends',)) or 1}: extends"
        if not isinstance(parent, str):
            raise ManifestError(f"{where}: must be a manifest id")
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise ManifestError(f"{where}: extends chain deeper than {MAX_EXTENDS_DEPTH}")
        search = [doc.path.parent, *(dirs if dirs is not None else search_dirs())]
        found = find_manifest(parent, search, exclude=doc.path)
        if found is None:
            raise ManifestError(f"{where}: no manifest named {parent!r} in "
                                f"{', '.join(str(d) for d in search)}")
        if any(_same(found, d.path) for d in chain):
            names = " -> ".join(str(d.path.name) for d in chain)
            raise ManifestError(f"{where}: extends cycle: {names} -> {found.name}")
        chain.append(load_raw(found))
    merged: dict[str, Any] = {}
    for doc in reversed(chain):
        body = {k: v for k, v in doc.data.items() if k != "extends"}
        merged = deep_merge(merged, body)
    return merged, chain


# ---------------------------------------------------------------- compiled model

@dataclass(frozen=True, slots=True)
class AuthSpec:
    scheme: str
    header: str | None = None
    prefix: str = ""
    param: str | None = None
    env: tuple[str, ...] = ()
    required: bool = True


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    content: Path | None
    thinking: Path | None
    tool_calls: Path | None
    finish_reason: Path | None
    usage: Mapping[str, Path]
    error: Path | None


@dataclass(frozen=True, slots=True)
class Matcher:
    """Matches a stream frame by event name, exact data and/or a JMESPath condition."""

    events: frozenset[str] | None = None
    data: str | None = None
    when: Path | None = None


@dataclass(frozen=True, slots=True)
class ToolCallRule:
    key: Path | None
    id: Path | None
    name: Path | None
    arguments: Path | None
    each: Path | None
    complete: bool
    extra: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRule:
    match: Matcher
    content: Path | None = None
    thinking: Path | None = None
    tool_call: ToolCallRule | None = None
    tool_call_end: Path | None = None
    finish_reason: Path | None = None
    usage: Mapping[str, Path] = field(default_factory=dict)
    error: Mapping[str, Path] | None = None
    error_code_from_event: bool = False
    end: bool = False


@dataclass(frozen=True, slots=True)
class StreamSpec:
    path: Node | None
    query: Node | None
    headers: Node | None
    body: Any  # raw tree, merged into the chat body at compile time
    framing: str
    end: tuple[Matcher, ...]
    eof_ok: bool
    ignore: tuple[Matcher, ...]
    events: tuple[EventRule, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """The request bodies for one family of models (the base or an override)."""

    pattern: Pattern | None
    body: Node
    stream_body: Node | None


@dataclass(frozen=True, slots=True)
class ChatSpec:
    method: str
    path: Node
    query: Node | None
    response: ResponseSpec
    stream: StreamSpec | None
    variants: tuple[Variant, ...]  # overrides first, the base last

    def variant_for(self, model: str) -> Variant:
        for variant in self.variants:
            if variant.pattern is None or variant.pattern.search(model):
                return variant
        return self.variants[-1]


@dataclass(frozen=True, slots=True)
class ErrorRule:
    kind: str
    status: frozenset[int] | None = None
    codes: frozenset[str] | None = None
    types: frozenset[str] | None = None
    message: Pattern | None = None
    retryable: bool | None = None


@dataclass(frozen=True, slots=True)
class RetryHint:
    header: str | None = None
    path: Path | None = None
    message: Pattern | None = None
    unit: str = "auto"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    message: Path | None = None
    code: Path | None = None
    type: Path | None = None
    rules: tuple[ErrorRule, ...] = ()
    retry_after: tuple[RetryHint, ...] = ()
    should_retry_header: str | None = None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    max_retries: int | None = None
    retry_on: frozenset[str] = DEFAULT_RETRYABLE
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    honor_retry_after: bool = True
    max_retry_after: float = 60.0


@dataclass(frozen=True, slots=True)
class Manifest:
    """A fully compiled manifest: everything the interpreter needs, nothing raw."""

    id: str
    name: str
    source: str
    base_url: str
    headers: Node | None
    auth: AuthSpec
    chat: ChatSpec
    finish_reasons: Mapping[str, str]
    errors: ErrorSpec
    retry: RetrySpec
    models: Mapping[str, Mapping[str, int | None]]
    tools: bool = True
    stream: bool = True
    tool_choice_modes: frozenset[str] = TOOL_CHOICE_MODES
    stream_errors: bool = True

    def model_info(self, model: str) -> dict[str, int | None]:
        info = self.models.get(model) or {}
        return {"context_window": info.get("context_window"), "max_output": info.get("max_output")}


# ---------------------------------------------------------------- checking

class _Collector:
    """Collects problems as ``file:line: key.path: message``, located via the chain."""

    def __init__(self, chain: list[RawDoc]) -> None:
        self.chain = chain
        self.problems: list[str] = []

    def add(self, key: KeyPath, message: str) -> None:
        for doc in self.chain:
            line = doc.lines.get(key)
            if line is not None:
                self.problems.append(f"{doc.path}:{line}: {format_path(key)}: {message}")
                return
        doc = self.chain[0]
        line = doc.line_of(key) or 1
        self.problems.append(f"{doc.path}:{line}: {format_path(key)}: {message}")


def _flatten_cerberus(errors: Any, prefix: KeyPath) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            out.extend(_flatten_cerberus(value, (*prefix, key)))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, str):
                out.append((prefix, item))
            else:
                out.extend(_flatten_cerberus(item, prefix))
    return out


def _without_nulls(value: Any) -> Any:
    """A file's own keys minus ``null`` values (which only delete inherited keys)."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


_validator: Any = None
_validator_lock = threading.Lock()


def _schema_problems(data: Mapping[str, Any], *, partial: bool) -> list[tuple[KeyPath, str]]:
    with _validator_lock:  # built once: cerberus checks the schema itself on construction
        return _schema_problems_locked(data, partial=partial)


def _schema_problems_locked(data: Mapping[str, Any], *,
                            partial: bool) -> list[tuple[KeyPath, str]]:
    global _validator
    if _validator is None:
        _validator = cerberus.Validator(SCHEMA, allow_unknown=False)
    validator = _validator
    schema_doc = _without_nulls(data) if partial else {
        k: v for k, v in data.items() if k != "extends"}
    try:
        ok = validator.validate(dict(schema_doc), update=partial)
    except Exception as exc:  # cerberus raises on some pathological documents
        return [((), f"cannot validate: {type(exc).__name__}: {exc}")]
    if ok:
        return []
    return [(_fix_key(path), msg) for path, msg in _flatten_cerberus(validator.errors, ())]


def _fix_key(path: KeyPath) -> KeyPath:
    return tuple(p if isinstance(p, int) else str(p) for p in path)


def check(path: FsPath, dirs: list[FsPath] | None = None) -> list[str]:
    """Every problem of the manifest at *path*, as report lines (empty when valid)."""
    return _check(path, dirs)[0]


def _check(path: FsPath, dirs: list[FsPath] | None) -> tuple[list[str], Manifest | None]:
    """(problems, the compiled manifest when there are none): one parse, one compile."""
    try:
        merged, chain = resolve(path, dirs)
    except ManifestError as exc:
        return [exc.message], None
    report = _Collector(chain)
    for doc in chain:
        for key, msg in _schema_problems(doc.data, partial=True):
            report.problems.append(f"{doc.path}:{doc.line_of(key) or 1}: "
                                   f"{format_path(key)}: {msg}")
    if report.problems:
        return report.problems, None
    for key, msg in _schema_problems(merged, partial=False):
        report.add(key, msg)
    if report.problems:
        return report.problems, None
    if merged.get("id") != path.stem:
        report.add(("id",), f"must equal the file name {path.stem!r}")
    manifest = _compile(merged, report)
    if report.problems:
        return report.problems, None
    from .request import dry_run  # local import: request depends on this module

    for key, msg in dry_run(manifest):
        report.add(key, msg)
    return report.problems, (None if report.problems else manifest)


# ---------------------------------------------------------------- compiling

class _Compiler:
    """Builds compiled objects, reporting problems instead of raising."""

    def __init__(self, report: _Collector) -> None:
        self.report = report

    def path(self, expr: Any, key: KeyPath) -> Path | None:
        if expr is None:
            return None
        try:
            return compile_path(expr)
        except PathError as exc:
            self.report.add(key, str(exc))
            return None

    def tree(self, tree: Any, key: KeyPath) -> Node | None:
        try:
            return compile_tree(tree)
        except TemplateError as exc:
            self.report.add((*key, *exc.path), str(exc))
            return None

    def regex(self, source: Any, key: KeyPath) -> Pattern | None:
        if source is None:
            return None
        try:
            return compile_pattern(source)
        except PatternError as exc:
            self.report.add(key, str(exc))
            return None

    def usage(self, spec: Mapping[str, Any] | None, key: KeyPath) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for name in USAGE_FIELDS:
            compiled = self.path((spec or {}).get(name), (*key, name))
            if compiled is not None:
                out[name] = compiled
        return out


def _compile(data: Mapping[str, Any], report: _Collector) -> Manifest:
    c = _Compiler(report)
    chat = data["chat"]
    auth = _auth(data["auth"], report)
    response = _response(c, chat["response"])
    stream = _stream(c, chat.get("stream"))
    variants = _variants(c, chat, stream)
    empty = compile_tree({})
    spec = ChatSpec(
        method=chat.get("method", "POST"),
        path=c.tree(chat["path"], ("chat", "path")) or empty,
        query=c.tree(chat["query"], ("chat", "query")) if "query" in chat else None,
        response=response,
        stream=stream,
        variants=variants,
    )
    caps = data.get("capabilities") or {}
    return Manifest(
        id=data["id"],
        name=data.get("name", data["id"]),
        source=str(report.chain[0].path) if report.chain else "",
        base_url=data["base_url"].rstrip("/"),
        headers=c.tree(data["headers"], ("headers",)) if data.get("headers") else None,
        auth=auth,
        chat=spec,
        finish_reasons=dict(data.get("finish_reasons") or {}),
        errors=_errors(c, data.get("errors") or {}),
        retry=_retry(data.get("retry") or {}),
        models={k: dict(v or {}) for k, v in (data.get("models") or {}).items()},
        tools=caps.get("tools", True),
        stream=caps.get("stream", stream is not None) and stream is not None,
        tool_choice_modes=frozenset(caps.get("tool_choice", TOOL_CHOICE_MODES)),
        stream_errors=_stream_errors(caps, stream, report),
    )


def _stream_errors(caps: Mapping[str, Any], stream: StreamSpec | None,
                   report: _Collector) -> bool:
    """Whether the provider reports errors inside a stream (it has an error rule)."""
    has_rule = stream is not None and any(r.error is not None for r in stream.events)
    declared = caps.get("stream_errors")
    if declared is True and not has_rule:
        report.add(("capabilities", "stream_errors"), "true, but no chat.stream event rule "
                   "has an 'error' action")
    if declared is False and has_rule:
        report.add(("capabilities", "stream_errors"), "false, but a chat.stream event rule "
                   "has an 'error' action")
    return has_rule if declared is None else bool(declared)


def _auth(spec: Mapping[str, Any], report: _Collector) -> AuthSpec:
    scheme = spec["scheme"]
    if scheme == "header" and not spec.get("header"):
        report.add(("auth", "scheme"), "scheme 'header' needs auth.header")
    if scheme == "query" and not spec.get("param"):
        report.add(("auth", "scheme"), "scheme 'query' needs auth.param")
    if scheme != "none" and not spec.get("env"):
        report.add(("auth",), "auth.env must list at least one environment variable")
    for name, allowed in (("header", {"header"}), ("param", {"query"}),
                          ("prefix", {"header"})):
        if name in spec and scheme not in allowed:
            report.add(("auth", name), f"not used by scheme {scheme!r}")
    return AuthSpec(
        scheme=scheme,
        header=spec.get("header"),
        prefix=spec.get("prefix", ""),
        param=spec.get("param"),
        env=tuple(spec.get("env") or ()),
        required=spec.get("required", scheme != "none"),
    )


def _response(c: _Compiler, spec: Mapping[str, Any]) -> ResponseSpec:
    key = ("chat", "response")
    return ResponseSpec(
        content=c.path(spec.get("content"), (*key, "content")),
        thinking=c.path(spec.get("thinking"), (*key, "thinking")),
        tool_calls=c.path(spec.get("tool_calls"), (*key, "tool_calls")),
        finish_reason=c.path(spec.get("finish_reason"), (*key, "finish_reason")),
        usage=c.usage(spec.get("usage"), (*key, "usage")),
        error=c.path(spec.get("error"), (*key, "error")),
    )


def _matcher(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> Matcher:
    events = spec.get("event")
    if isinstance(events, str):
        events = [events]
    return Matcher(
        events=frozenset(events) if events else None,
        data=spec.get("data"),
        when=c.path(spec.get("when"), (*key, "when")),
    )


def _event_rule(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> EventRule:
    actions = {"content", "thinking", "tool_call", "tool_call_end", "finish_reason",
               "usage", "error", "end"}
    if not actions & set(spec):
        c.report.add(key, "an event rule needs at least one action "
                          f"({', '.join(sorted(actions))})")
    if not {"event", "data", "when"} & set(spec):
        c.report.add(key, "an event rule needs a condition (event, data or when)")
    tool = spec.get("tool_call")
    error = spec.get("error")
    end_key = (spec.get("tool_call_end") or {}).get("key")
    return EventRule(
        match=_matcher(c, spec, key),
        content=c.path(spec.get("content"), (*key, "content")),
        thinking=c.path(spec.get("thinking"), (*key, "thinking")),
        tool_call=_tool_rule(c, tool, (*key, "tool_call")) if tool else None,
        tool_call_end=c.path(end_key, (*key, "tool_call_end", "key")),
        finish_reason=c.path(spec.get("finish_reason"), (*key, "finish_reason")),
        usage=c.usage(spec.get("usage"), (*key, "usage")),
        error={name: p for name, expr in (error or {}).items() if name != "code_from_event"
               and (p := c.path(expr, (*key, "error", name))) is not None}
        if error is not None else None,
        error_code_from_event=bool((error or {}).get("code_from_event", False)),
        end=bool(spec.get("end", False)),
    )


def _tool_rule(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> ToolCallRule:
    complete = bool(spec.get("complete", False))
    if not complete and "key" not in spec and "id" not in spec:
        c.report.add(key, "a fragment tool_call rule needs 'key' or 'id' "
                          "(or complete: true for whole calls)")
    if complete and "name" not in spec:
        c.report.add(key, "a complete tool_call rule needs 'name'")
    return ToolCallRule(
        key=c.path(spec.get("key"), (*key, "key")),
        id=c.path(spec.get("id"), (*key, "id")),
        name=c.path(spec.get("name"), (*key, "name")),
        arguments=c.path(spec.get("arguments"), (*key, "arguments")),
        each=c.path(spec.get("each"), (*key, "each")),
        complete=complete,
        extra={name: p for name, expr in (spec.get("extra") or {}).items()
               if (p := c.path(expr, (*key, "extra", name))) is not None},
    )


def _stream(c: _Compiler, spec: Mapping[str, Any] | None) -> StreamSpec | None:
    if spec is None:
        return None
    key: KeyPath = ("chat", "stream")
    if "framing" not in spec:
        c.report.add(key, "stream needs 'framing'")
    if not spec.get("events"):
        c.report.add(key, "stream needs at least one rule in 'events'")
    if not spec.get("end") and not spec.get("eof_ok") and not any(
            r.get("end") for r in spec.get("events") or []):
        c.report.add(key, "stream needs an end condition ('end', an event with end: true, "
                          "or eof_ok: true)")
    return StreamSpec(
        path=c.tree(spec["path"], (*key, "path")) if "path" in spec else None,
        query=c.tree(spec["query"], (*key, "query")) if "query" in spec else None,
        headers=c.tree(spec["headers"], (*key, "headers")) if spec.get("headers") else None,
        body=spec.get("body") or {},
        framing=spec.get("framing", "sse"),
        end=tuple(_matcher(c, m, (*key, "end", i)) for i, m in enumerate(spec.get("end") or [])),
        eof_ok=bool(spec.get("eof_ok", False)),
        ignore=tuple(_matcher(c, m, (*key, "ignore", i))
                     for i, m in enumerate(spec.get("ignore") or [])),
        events=tuple(_event_rule(c, r, (*key, "events", i))
                     for i, r in enumerate(spec.get("events") or [])),
    )


def _variants(c: _Compiler, chat: Mapping[str, Any], stream: StreamSpec | None) -> tuple[
        Variant, ...]:
    base_body = chat["body"] or {}
    out: list[Variant] = []
    for i, override in enumerate(chat.get("overrides") or []):
        key: KeyPath = ("chat", "overrides", i)
        body = deep_merge(base_body, override.get("body") or {})
        stream_extra = deep_merge(stream.body if stream else {}, override.get("stream_body") or {})
        if "stream_body" in override and stream is None:
            c.report.add((*key, "stream_body"), "the manifest has no chat.stream section")
        out.append(_variant(c, c.regex(override["match"], (*key, "match")), body,
                            stream_extra if stream else None, key))
    out.append(_variant(c, None, base_body, stream.body if stream else None, ("chat",)))
    return tuple(out)


def _variant(c: _Compiler, pattern: Pattern | None, body: Any, stream_body: Any,
             key: KeyPath) -> Variant:
    empty = compile_tree({})
    compiled = c.tree(body, (*key, "body")) or empty
    streamed = None
    if stream_body is not None:
        streamed = c.tree(deep_merge(body, stream_body), (*key, "body")) or empty
    return Variant(pattern, compiled, streamed)


def _errors(c: _Compiler, spec: Mapping[str, Any]) -> ErrorSpec:
    key: KeyPath = ("errors",)
    rules = []
    for i, rule in enumerate(spec.get("rules") or []):
        rkey = (*key, "rules", i)
        if not {"status", "code", "type", "message_matches"} & set(rule):
            c.report.add(rkey, "a rule needs a condition (status, code, type or "
                               "message_matches)")
        rules.append(ErrorRule(
            kind=rule["kind"],
            status=_set(rule.get("status"), int),
            codes=_set(rule.get("code"), str),
            types=_set(rule.get("type"), str),
            message=c.regex(rule.get("message_matches"), (*rkey, "message_matches")),
            retryable=rule.get("retryable"),
        ))
    hints = []
    for i, hint in enumerate(spec.get("retry_after") or []):
        hkey = (*key, "retry_after", i)
        if not {"header", "path", "message_matches"} & set(hint):
            c.report.add(hkey, "a retry hint needs one of header, path, message_matches")
        hints.append(RetryHint(
            header=hint.get("header"),
            path=c.path(hint.get("path"), (*hkey, "path")),
            message=c.regex(hint.get("message_matches"), (*hkey, "message_matches")),
            unit=hint.get("unit", "auto"),
        ))
    return ErrorSpec(
        message=c.path(spec.get("message"), (*key, "message")),
        code=c.path(spec.get("code"), (*key, "code")),
        type=c.path(spec.get("type"), (*key, "type")),
        rules=tuple(rules),
        retry_after=tuple(hints),
        should_retry_header=spec.get("should_retry_header"),
    )


def _set(value: Any, conv: type) -> frozenset[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return frozenset(conv(v) for v in items)


def _retry(spec: Mapping[str, Any]) -> RetrySpec:
    default = RetrySpec()
    return RetrySpec(
        max_retries=spec.get("max_retries"),
        retry_on=frozenset(spec["retry_on"]) if "retry_on" in spec else default.retry_on,
        backoff_base=float(spec.get("backoff_base", default.backoff_base)),
        backoff_max=float(spec.get("backoff_max", default.backoff_max)),
        honor_retry_after=spec.get("honor_retry_after", default.honor_retry_after),
        max_retry_after=float(spec.get("max_retry_after", default.max_retry_after)),
    )


# ---------------------------------------------------------------- the cache

_cache: dict[tuple[str, str], Manifest] = {}
_cache_lock = threading.Lock()


def compile_file(path: FsPath, dirs: list[FsPath] | None = None) -> Manifest:
    """Check and compile the manifest at *path*; raise ManifestError listing every problem."""
    try:
        problems, manifest = _check(path, dirs)
    except RecursionError:
        problems, manifest = [f"{path}:1: (top): nested too deeply to compile"], None
    if manifest is None:
        raise ManifestError(f"invalid manifest {path}:\n" + "\n".join(problems),
                            problems=problems, provider=path.stem)
    return manifest


def load_manifest(provider: str) -> Manifest:
    """The compiled manifest for *provider*, loaded once per search path."""
    cache_key = (provider, os.environ.get(PATH_ENV, ""))
    with _cache_lock:
        cached = _cache.get(cache_key)
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
    with _cache_lock:
        _cache[cache_key] = manifest
    return manifest


def clear_cache() -> None:
    """Forget loaded manifests (after editing files in a long-running process)."""
    with _cache_lock:
        _cache.clear()
