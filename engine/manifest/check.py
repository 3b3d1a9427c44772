"""Full checking of one manifest file: schema, compile, dry-run render. Uses cerberus.

:func:`check_file` is what ``python -m engine.validate`` and a first load of
a manifest run: it resolves the ``extends`` chain, checks each file and the
merged result against :data:`~engine.manifest.schema.SCHEMA` (unknown keys are
errors), compiles everything (:mod:`engine.manifest.compile`) and renders the
request templates against sample requests. It returns every problem as
``file:line: key.path: message`` (each once, at its own line) and the
compiled manifest when there are none. The call path never imports this
module once a manifest's content was checked (see :mod:`engine.manifest.load`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import cerberus

from ..errors import EngineError, ManifestError
from ..protocol.classify import kind_for_status
from ..protocol.render import prepare
from ..retry import RetryPolicy
from ..types import ChatRequest, Message, Tool, ToolCall
from .compile import Problems, compile_manifest
from .locate import KeyPath, format_path
from .model import Manifest
from .schema import SCHEMA
from .source import resolve
from .templates import TemplateError

__all__ = ["CheckResult", "check", "check_file", "dry_run"]


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


@dataclass
class CheckResult:
    """The outcome of checking one file: problems, and on success what was checked."""

    problems: list[str]
    manifest: Manifest | None = None
    merged: dict[str, Any] | None = None  # the checked mapping the manifest compiles from
    files: list[FsPath] = field(default_factory=list)  # the extends chain, child first
    warnings: list[str] = field(default_factory=list)  # valid, but worth a look


def check(path: FsPath, dirs: list[FsPath] | None = None) -> list[str]:
    """Every problem of the manifest at *path*, as report lines (empty when valid)."""
    return check_file(path, dirs).problems


def check_file(path: FsPath, dirs: list[FsPath] | None = None) -> CheckResult:
    """Resolve, schema-check, compile and dry-run *path*: one parse, one compile."""
    try:
        merged, chain = resolve(path, dirs)
    except ManifestError as exc:
        return CheckResult([exc.message])
    report = Problems(chain)
    for doc in chain:
        for key, msg in _schema_problems(doc.data, partial=True):
            report.problems.append(f"{doc.path}:{doc.line_of(key) or 1}: "
                                   f"{format_path(key)}: {msg}")
    if report.problems:
        return CheckResult(report.problems)
    for key, msg in _schema_problems(merged, partial=False):
        report.add(key, msg)
    if report.problems:
        return CheckResult(report.problems)
    if merged.get("id") != path.stem:
        report.add(("id",), f"must equal the file name {path.stem!r}")
    manifest = compile_manifest(merged, report)
    if report.problems:
        return CheckResult(report.problems)
    for key, msg in dry_run(manifest):
        report.add(key, msg)
    if report.problems:
        return CheckResult(report.problems)
    notes = Problems(chain)
    for key, msg in restated_defaults(merged):
        notes.add(key, f"warning: {msg}")
    return CheckResult([], manifest, merged, [doc.path for doc in chain], notes.problems)


def _statuses(rule: Mapping[str, Any]) -> set[int]:
    value = rule["status"]
    return set(value if isinstance(value, list) else [value])


def restated_defaults(data: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """Configuration that says what the engine does anyway (harmless, but noise that drifts)."""
    found: list[tuple[KeyPath, str]] = []
    default = RetryPolicy()
    for name, value in (data.get("retry") or {}).items():
        current = getattr(default, name)
        same = (frozenset(value) == current) if isinstance(current, frozenset) else (
            value == current)
        if same:
            found.append((("retry", name), f"restates the default ({value!r}); remove it"))
    rules = (data.get("errors") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        if set(rule) != {"status", "kind"}:
            continue
        statuses = _statuses(rule)
        if any(kind_for_status(s) != rule["kind"] for s in statuses):
            continue
        later = rules[index + 1:]
        if all("status" in r and not statuses & _statuses(r) for r in later):
            found.append((("errors", "rules", index), f"restates what HTTP {sorted(statuses)} "
                          f"means anyway ({rule['kind']}); remove it"))
    return found


def _samples() -> list[ChatRequest]:
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    tool = Tool("get_weather", "Get the weather", {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]})
    full = (
        Message.system("Be brief."),
        Message.user("What is the weather in Paris?"),
        Message.assistant("", tool_calls=[call]),
        Message.tool("call_1", "22C"),
        Message.assistant("It is 22C."),
        Message.user("Thanks"),
    )
    params = {"temperature": 0.5, "max_tokens": 10, "top_p": 0.9, "stop": ["END"], "seed": 1}
    return [
        ChatRequest((Message.user("Hi"),)),
        ChatRequest(full, params, (tool,), "auto"),
        ChatRequest(full, params, (tool,), "required"),
        ChatRequest(full, {}, (tool,), {"name": "get_weather"}),
        ChatRequest(full, {}, (tool,), "none"),
    ]


def dry_run(manifest: Manifest) -> list[tuple[tuple[str | int, ...], str]]:
    """Render every request template against sample requests; report failures."""
    models = ["sample-model", *manifest.models]
    for request in _samples():
        for model in models:
            for stream in (False, True) if manifest.stream else (False,):
                # The first failure is reported; the same template would fail again.
                try:
                    prepare(manifest, request, model, api_key="sk-dry-run-key", stream=stream)
                except ManifestError as exc:
                    return [(exc.key or ("chat",), exc.detail)]
                except TemplateError as exc:
                    return [(("chat", *exc.path), str(exc))]
                except EngineError as exc:
                    if exc.kind != "invalid_request":
                        return [(("chat",), exc.message)]
    return []
