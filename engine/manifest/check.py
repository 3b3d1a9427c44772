"""Full checking of one manifest file: schema, compile, dry-run render. Uses cerberus.

:func:`check_file` is what ``python -m engine.validate`` and a first load of
a manifest run: it resolves the ``extends`` chain, checks each file and the
merged result against :data:`~engine.manifest.schema.SCHEMA` (unknown keys are
errors, with the closest allowed key as a "did you mean"), compiles
everything (:mod:`engine.manifest.compile`) and renders the request
templates against sample requests. It returns every problem as
``file:line: key.path: message``: each once, at the line of the key in the
file that writes it, in file order, at most
:data:`~engine.manifest.compile.LIMIT` of them and then one line counting the
rest (or saying that checking stopped there). A patch of a named list is
checked as the items it describes, each reported by its name
(``errors.rules.<name>``); a name used twice in one list is a problem. An
``id`` that differs from the
file name is reported alongside the other problems, never instead of them. On
success it returns the compiled manifest, with warnings about configuration
that restates a default or a parent's rule. Its time is linear in the size of
the file: unknown keys are found by one walk
(:func:`~engine.manifest.schema.shape`), cerberus only ever sees pieces of
bounded size, and the pieces beyond the first are not checked once the report
is full. The call path never imports this module once a manifest's content
was checked (see :mod:`engine.manifest.load`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import cerberus

from ..errors import EngineError, ManifestError
from ..parts import Part
from ..protocol.classify import kind_for_status
from ..protocol.render import prepare, prepare_count_tokens, prepare_embed, prepare_list_models
from ..protocol.settings import render_base_url, samples
from ..retry import RetryPolicy
from ..types import ChatRequest, EmbedRequest, Message, Tool, ToolCall
from .compile import Problems, body_layers, compile_manifest, owner
from .locate import KeyPath, id_problem, reach, valid_id
from .model import OPERATIONS, Manifest
from .schema import NAMED_LISTS, SCHEMA, Piece, Shaped, shape, suggest
from .source import trace
from .templates import TemplateError, render_checked

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


# Cerberus validators, built once each (cerberus checks a schema on construction) and
# used under one lock (a validator keeps the state of the document it checks).
_validators: dict[int, Any] = {}
_validator_lock = threading.Lock()


def _validator(rule: Mapping[str, Any] | None) -> Any:
    """The validator of the whole schema (None) or of one piece's container *rule*."""
    key = id(rule)
    if key not in _validators:
        schema = SCHEMA if rule is None else {"v": rule}
        _validators[key] = cerberus.Validator(schema, allow_unknown=False)
    return _validators[key]


def _schema_check(data: Mapping[str, Any], report: Problems, *, index: int | None) -> None:
    """Schema problems of one file (*index* in the chain; its own keys, ``null`` dropped)
    or, with *index* None, of the merged manifest (whose unknown keys are all some
    file's, reported there); stops once *report* is full."""
    doc = _without_nulls(data) if index is not None else {
        k: v for k, v in data.items() if k != "extends"}
    shaped = shape(doc)
    add = report.add if index is None else (
        lambda key, msg: report.add_in(index, shaped.file_key(key), msg))
    for n, (key, allowed) in enumerate(shaped.unknown if index is not None else ()):
        # A suggestion only for lines that can be shown: the report keeps the first LIMIT.
        add(key, "unknown field" + (suggest(key[-1], allowed) if n < report.limit else ""))
    with _validator_lock:
        for key, msg in _cerberus_problems(shaped, report, update=index is not None):
            add(key, msg)
    for key, msg in _duplicate_names(doc) if index is not None else ():
        add(key, msg)


def _duplicate_names(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """An item of a named list whose name an earlier item of the list has."""
    for path in NAMED_LISTS:
        held, _ = reach(doc, path)
        items = _at(doc, path) if held == len(path) else None
        seen: dict[str, int] = {}
        for i, item in enumerate(items if isinstance(items, list) else ()):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                yield (*path, i, "name"), (f"duplicate name {name!r} (also item {seen[name]} "
                                           "of this list): names in a list are unique")
            seen.setdefault(name, i)


def _at(tree: Any, path: KeyPath) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def _cerberus_problems(shaped: Shaped, report: Problems, *,
                       update: bool) -> Iterator[tuple[KeyPath, str]]:
    units: list[Piece | None] = [None, *shaped.pieces]  # None: the document itself
    for unit in units:
        if unit is not None and report.full:  # the document itself is always checked
            report.stopped = True
            return
        value = shaped.doc if unit is None else {"v": unit.value}
        for key, msg in _validate(_validator(None if unit is None else unit.rule), value,
                                  update):
            key = key if unit is None else _in_piece(unit, key)
            yield key, msg + _hint(shaped, key, msg)


def _validate(validator: Any, doc: Mapping[str, Any], update: bool) -> list[tuple[KeyPath, str]]:
    try:
        ok = validator.validate(dict(doc), update=update)
    except Exception as exc:  # cerberus raises on some pathological documents
        return [((), f"cannot validate: {type(exc).__name__}: {exc}")]
    if ok:
        return []
    return [(_fix_key(path), msg) for path, msg in _flatten_cerberus(validator.errors, ())]


def _in_piece(piece: Piece, key: KeyPath) -> KeyPath:
    """A key of a piece's document ``{"v": entries}`` as a key of the manifest."""
    rest = key[1:]
    if rest and isinstance(rest[0], int):
        rest = (rest[0] + piece.offset, *rest[1:])
    return (*piece.path, *rest)


def _hint(shaped: Shaped, key: KeyPath, message: str) -> str:
    allowed = shaped.allowed.get(key)
    if allowed is None or not message.startswith("unallowed value "):
        return ""
    return suggest(message[len("unallowed value "):], allowed)


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
    unreported: int = 0  # problems found beyond those listed (the last line counts them)
    stopped: bool = False  # checking stopped once the report was full: there may be more


def check(path: FsPath, dirs: list[FsPath] | None = None) -> list[str]:
    """Every problem of the manifest at *path*, as report lines (empty when valid)."""
    return check_file(path, dirs).problems


def check_file(path: FsPath, dirs: list[FsPath] | None = None) -> CheckResult:
    """Resolve, schema-check, compile and dry-run *path*: one parse, one compile."""
    try:
        done = trace(path, dirs)
    except ManifestError as exc:
        return CheckResult([exc.message])
    merged, chain = done.merged, done.chain
    report = Problems(chain, origins=done.origins, lists=NAMED_LISTS)
    for index, key, msg in done.problems:
        report.add_in(index, key, msg)
    manifest = _checked(merged, report)
    _check_id(merged.get("id"), path, report)
    if manifest is None or report.count:
        return CheckResult(report.problems, unreported=report.unreported,
                           stopped=report.stopped)
    notes = Problems(chain, origins=done.origins, lists=NAMED_LISTS)
    for key, msg in restated_defaults(merged):
        notes.add(key, f"warning: {msg}")
    for index, key, msg in done.restated:
        notes.add_in(index, key, f"warning: {msg}")
    return CheckResult([], manifest, merged, [doc.path for doc in chain], notes.problems)


def _check_id(ident: Any, path: FsPath, report: Problems) -> None:
    """An ill-formed id, or one that differs from the file name: reported with the
    other problems, never instead of them (the schema says whether there is one)."""
    if not isinstance(ident, str):
        return
    if not valid_id(ident):
        report.add(("id",), id_problem(ident))
    elif ident != path.stem:
        report.add(("id",), f"must equal the file name {path.stem!r}")


def _checked(merged: dict[str, Any], report: Problems) -> Manifest | None:
    """The manifest when every stage passes; each stage runs only when those before did."""
    for index, doc in enumerate(report.chain):
        _schema_check(doc.data, report, index=index)
    _schema_check(merged, report, index=None)  # what no single file has (a required key)
    if not any(merged.get(op) is not None for op in OPERATIONS):
        report.add(("chat",), f"required field: a manifest describes at least one "
                   f"operation ({', '.join(OPERATIONS)})")
    if report.count:
        return None
    manifest = compile_manifest(merged, report)
    if report.count:
        return None
    for key, msg in dry_run(manifest, merged):
        report.add(key, msg)
    return None if report.count else manifest


def _statuses(rule: Mapping[str, Any]) -> set[int]:
    value = rule["status"]
    return set(value if isinstance(value, list) else [value])


def restated_defaults(data: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """Configuration that says what the engine does anyway (harmless, but noise that drifts).

    (A child's list item equal to its parent's, the other such noise, is found while
    merging: :attr:`~engine.manifest.source.Resolved.restated`.)
    """
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
        if set(rule) - {"name"} != {"status", "kind"}:
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
    # One media part per sample: a manifest that lacks one kind still renders the others.
    media = [Message.user(["Look.", part, Part.text("Cached.", cache=True)]) for part in (
        Part.image(url="https://example.test/a.png"),
        Part.image(data=b"\x89PNG", media_type="image/png"),
        Part.document(data=b"%PDF-1.4", name="a.pdf"),
        Part.document(url="https://example.test/a.pdf"),
        Part.audio(data=b"RIFF", media_type="audio/wav"),
        Part.audio(url="https://example.test/a.wav"))]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    json_mode = {"type": "json_object", "name": None, "schema": None, "strict": False}
    return [
        ChatRequest((Message.user("Hi"),)),
        *(ChatRequest((m,), {}, None, None, {}, {}, None) for m in media),
        *(ChatRequest((media[0],), {}, None, None, {}, {}, form) for form in (fmt, json_mode)),
        # One reasoning control per sample (a manifest may offer some only).
        *(ChatRequest((Message.user("Think."),), {"max_tokens": 4096},
                      reasoning={"effort": None, "budget_tokens": None, "summary": None,
                                 "adaptive": False, **control})
          for control in ({"effort": "high"}, {"effort": "none"}, {"budget_tokens": 1024},
                          {"summary": "auto"}, {"adaptive": True})),
        ChatRequest(full, params, (tool,), "auto"),
        ChatRequest(full, params, (tool,), "required"),
        ChatRequest(full, {}, (tool,), {"name": "get_weather"}),
        ChatRequest(full, {}, (tool,), "none"),
        ChatRequest(full, {}, (Tool("strict_tool", "Strict", tool.parameters, True),), None,
                    parallel_tool_calls=False),
        ChatRequest(full, {}, (tool,), "required", parallel_tool_calls=False),
    ]


def dry_run(manifest: Manifest, data: Mapping[str, Any] | None = None) -> list[
        tuple[KeyPath, str]]:
    """Render every request template against sample requests; report the first failure.

    With the merged manifest *data*, a failure is located where the failing
    template is written (an override's body, the stream body, the role table)
    rather than where it lands in the request.
    """
    models = ["sample-model", *manifest.models]
    settings = samples(manifest)
    if manifest.auth.region is not None:
        try:
            render_checked(manifest.auth.region, {"settings": settings}, "auth.region",
                           manifest.id)
        except ManifestError as exc:
            return [(("auth", "region"), exc.detail)]
    if manifest.base_url_template is not None:
        try:
            render_base_url(manifest, settings)
        except ManifestError as exc:
            return [(("base_url",), exc.detail)]
        except EngineError as exc:
            return [(("base_url",), exc.message)]
    for request in _samples() if manifest.chat is not None else ():
        for model in models:
            for stream in (False, True) if manifest.stream else (False,):
                # The first failure is reported; the same template would fail again.
                try:
                    prepare(manifest, request, model, api_key="sk-dry-run-key", stream=stream,
                            settings=settings)
                except ManifestError as exc:
                    key = exc.key or ("chat",)
                    return [(_written(manifest, data, model, stream, key), exc.detail)]
                except TemplateError as exc:
                    return [(("chat", *exc.path), str(exc))]
                except EngineError as exc:
                    if exc.kind != "invalid_request":
                        return [(("chat",), exc.message)]
    return _dry_run_operations(manifest, models, settings)


def _embed_samples(manifest: Manifest) -> list[EmbedRequest]:
    spec = manifest.embed
    if spec is None:
        return []
    dims = 256 if spec.dimensions else None
    return [EmbedRequest(("one text",)), EmbedRequest(("one", "two", "three"), dims),
            *(EmbedRequest(("a query",), dims, kind) for kind in spec.input_types)]


def _dry_run_operations(manifest: Manifest, models: list[str],
                        settings: Mapping[str, str]) -> list[tuple[KeyPath, str]]:
    """Render the operations' templates: embed samples, both list pages, the counter."""
    key = "sk-dry-run-key"
    renders: list[tuple[str, Callable[[str], Any]]] = []

    def embed(request: EmbedRequest) -> Callable[[str], Any]:
        return lambda m: prepare_embed(manifest, request, request.inputs, m, api_key=key,
                                       settings=settings)

    def listing(cursor: str | None) -> Callable[[str], Any]:
        return lambda m: prepare_list_models(manifest, m, cursor, api_key=key,
                                             settings=settings)

    def count(request: ChatRequest) -> Callable[[str], Any]:
        return lambda m: prepare_count_tokens(manifest, request, m, api_key=key,
                                              settings=settings)

    renders += [("embed", embed(r)) for r in _embed_samples(manifest)]
    if manifest.list_models is not None:
        renders += [("list_models", listing(c)) for c in (None, "next-page-cursor")]
    if manifest.count_tokens is not None:
        renders += [("count_tokens", count(r)) for r in _samples()]
    for op, render in renders:
        for model in models:
            try:
                render(model)
            except ManifestError as exc:
                return [(exc.key or (op,), exc.detail)]
            except TemplateError as exc:
                return [((op, *exc.path), str(exc))]
            except EngineError as exc:
                if exc.kind != "invalid_request":
                    return [((op,), exc.message)]
    return []


def _written(manifest: Manifest, data: Mapping[str, Any] | None, model: str, stream: bool,
             key: KeyPath) -> KeyPath:
    """Where the template that failed at request key *key* is written in *data*."""
    chat = (data or {}).get("chat")
    if not isinstance(chat, Mapping):
        return key
    if key[:2] == ("chat", "path") and stream and "path" in (chat.get("stream") or {}):
        return ("chat", "stream", "path", *key[2:])
    if key[:2] != ("chat", "body"):
        return key
    if manifest.chat is None:
        return key
    variant = manifest.chat.variant_for(model)
    index = next(i for i, v in enumerate(manifest.chat.variants) if v is variant)
    layers = body_layers(chat, index if index < len(chat.get("overrides") or []) else None,
                         stream)
    path = key[2:]
    if any(reach(tree, path) == (len(path), True) for _, tree in layers):
        return owner(layers, path)
    return _in_role_table(chat, path) or owner(layers, path)


def _in_role_table(chat: Mapping[str, Any], path: KeyPath) -> KeyPath | None:
    """A body path through ``$message`` (``..., "message", role, ...``) as a key of
    ``chat.message``, when the role table writes it."""
    for at, step in enumerate(path):
        if step == "message" and at + 1 < len(path):
            held, decides = reach(chat.get("message") or {}, path[at + 1:])
            if decides and held == len(path) - at - 1:
                return ("chat", "message", *path[at + 1:])
    return None
