"""Compile the operation sections beside ``chat``: ``embed``, ``list_models``, ``count_tokens``.

Each section is an endpoint (method, path, query), its body template (none
for ``list_models``), the JMESPath expressions that read its answer, and an
optional ``errors`` section applied over the manifest's own (its rules are
tried first; the paths it gives replace the top-level ones). ``count_tokens``
has no body of its own: its ``body`` is merged over every chat variant's
(``null`` removes a key) and the result is put under ``wrap`` when given (a
key, or a dotted path of keys: ``input.converse``), so
messages, tools and system placement render exactly as a chat request does.
Problems go to the :class:`~engine.manifest.compile.Problems` collector, like
every other compile problem. No cerberus.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .locate import KeyPath
from .merge import deep_merge
from .model import (
    CountTokensSpec,
    EmbedSpec,
    Endpoint,
    ErrorSpec,
    ListModelsSpec,
    Variant,
)
from .templates import TemplateError, compile_tree, compile_with_roles

if TYPE_CHECKING:
    from .compile import _Compiler

__all__ = ["compile_count_tokens", "compile_embed", "compile_list_models", "merge_errors"]


def merge_errors(own: ErrorSpec, top: ErrorSpec) -> ErrorSpec:
    """An operation's errors over the manifest's: its rules and hints first."""
    return ErrorSpec(
        message=own.message or top.message,
        code=own.code or top.code,
        type=own.type or top.type,
        rules=own.rules + top.rules,
        retry_after=own.retry_after + top.retry_after,
    )


def _endpoint(c: _Compiler, spec: Mapping[str, Any], op: str) -> Endpoint:
    return Endpoint(
        method=spec.get("method", "GET" if op == "list_models" else "POST"),
        path=c.tree(spec["path"], (op, "path")) or compile_tree(""),
        query=c.tree(spec["query"], (op, "query")) if spec.get("query") is not None else None,
    )


def _own_errors(c: _Compiler, spec: Mapping[str, Any], op: str, top: ErrorSpec) -> ErrorSpec:
    from .compile import _errors

    if not spec.get("errors"):
        return top
    return merge_errors(_errors(c, spec["errors"], (op, "errors")), top)


def compile_embed(c: _Compiler, spec: Mapping[str, Any] | None, top: ErrorSpec
                  ) -> EmbedSpec | None:
    if spec is None:
        return None
    response = spec["response"]
    key: KeyPath = ("embed", "response")
    usage = {name: path for name in ("prompt_tokens", "total_tokens")
             if (path := c.path((response.get("usage") or {}).get(name),
                                (*key, "usage", name))) is not None}
    vectors = c.path(response["vectors"], (*key, "vectors"))
    return EmbedSpec(
        endpoint=_endpoint(c, spec, "embed"),
        body=c.tree(spec["body"], ("embed", "body")) or compile_tree({}),
        vectors=vectors if vectors is not None else _never(c),
        index=c.path(response.get("index"), (*key, "index")),
        model=c.path(response.get("model"), (*key, "model")),
        usage=usage,
        errors=_own_errors(c, spec, "embed", top),
        max_inputs=spec.get("max_inputs"),
        dimensions=bool(spec.get("dimensions", False)),
        input_types=dict(spec.get("input_types") or {}),
        allow_empty=bool(spec.get("allow_empty", False)),
    )


def compile_list_models(c: _Compiler, spec: Mapping[str, Any] | None, top: ErrorSpec
                        ) -> ListModelsSpec | None:
    if spec is None:
        return None
    response = spec["response"]
    key: KeyPath = ("list_models", "response")
    pages = spec.get("pages") or {}
    if spec.get("method", "GET") != "GET":
        c.report.add(("list_models", "method"), "a model listing is a GET request")
    capabilities = {name: path for name, expr in (response.get("capabilities") or {}).items()
                    if (path := c.path(expr, (*key, "capabilities", name))) is not None}
    models = c.path(response["models"], (*key, "models"))
    ident = c.path(response["id"], (*key, "id"))
    return ListModelsSpec(
        endpoint=_endpoint(c, spec, "list_models"),
        models=models if models is not None else _never(c),
        id=ident if ident is not None else _never(c),
        context_window=c.path(response.get("context_window"), (*key, "context_window")),
        max_output=c.path(response.get("max_output"), (*key, "max_output")),
        capabilities=capabilities,
        errors=_own_errors(c, spec, "list_models", top),
        next=c.path(pages.get("next"), ("list_models", "pages", "next")),
        more=c.path(pages.get("more"), ("list_models", "pages", "more")),
        max_pages=int(pages.get("max_pages", 100)),
    )


def compile_count_tokens(c: _Compiler, spec: Mapping[str, Any] | None,
                         chat: Mapping[str, Any] | None, top: ErrorSpec
                         ) -> CountTokensSpec | None:
    if spec is None:
        return None
    if chat is None:
        c.report.add(("count_tokens",), "count_tokens renders the chat request: the manifest "
                     "needs a chat section")
        return None
    extra = spec.get("body") or {}
    wrap = spec.get("wrap")
    base = chat.get("body") or {}
    variants: list[Variant] = []
    for i, override in enumerate(chat.get("overrides") or []):
        body = deep_merge(deep_merge(base, override.get("body") or {}), extra)
        pattern = c.regex(override["match"], ("chat", "overrides", i, "match"))
        variants.append(Variant(pattern, _body(c, body, wrap), None))
    variants.append(Variant(None, _body(c, deep_merge(base, extra), wrap), None))
    tokens = c.path(spec["response"]["tokens"], ("count_tokens", "response", "tokens"))
    return CountTokensSpec(
        endpoint=_endpoint(c, spec, "count_tokens"),
        variants=tuple(variants),
        tokens=tokens if tokens is not None else _never(c),
        errors=_own_errors(c, spec, "count_tokens", top),
    )


def _body(c: _Compiler, body: Any, wrap: str | None) -> Any:
    """The compiled count body; a template problem is reported at count_tokens.body
    (the chat body's own problems are reported where chat compiles it)."""
    keys = wrap.split(".") if wrap else []
    tree = body
    for key in reversed(keys):
        tree = {key: tree}
    try:
        return compile_with_roles(tree, c.roles)
    except TemplateError as exc:
        path = exc.path[len(keys):]
        c.report.add(("count_tokens", "body", *path), str(exc))
        return compile_tree({})


def _never(c: _Compiler) -> Any:
    """A placeholder for an expression that failed to compile (already reported)."""
    path = c.path("`null`", ())
    assert path is not None
    return path
