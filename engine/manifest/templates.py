"""Request templates: YAML trees whose string leaves are sandboxed Jinja.

A template is compiled once (:func:`compile_tree`) into a tree of nodes and
rendered many times (:meth:`Node.render`) against a context of plain data.
Rendering produces plain JSON-able Python values, never JSON text, so no
message content (quotes, newlines, emoji, ``{{ }}``) can break the body.

Leaf rules:

* ``"{{ expr }}"`` (the whole string one expression) evaluates to the native
  value of ``expr`` (a number stays a number, a list a list, ``none`` is None);
* any other string containing ``{{`` renders to a string;
* other scalars are literals.

Structure rules: a mapping key whose value renders to ``None`` is omitted, and
a mapping all of whose keys were omitted is itself ``None`` (a literal ``{}``
stays); a ``None`` item in a list is dropped. Directive mappings:

* ``{$each: "{{ items }}", as: name, do: <tree>, flatten: false}`` -> list
  (``None`` items: the whole value is ``None``);
* ``{$if: "{{ cond }}", then: <tree>, else: <tree>}`` (``else`` optional);
* ``{$switch: "{{ value }}", cases: {value: <tree>}, default: <tree>}``;
* ``{$concat: [<tree>, ...]}`` -> one list: list results are spliced in,
  other values appended, ``None`` skipped;
* ``{$message: "{{ m }}"}`` -> the message renders through the manifest's
  role table (``chat.message``: one tree per role, and ``default``), with the
  message bound to ``m``; a child manifest patches one role by name.

An unset value is omitted; a JSON ``null`` that the provider must receive is
written ``{{ null }}`` (or any expression that evaluates to ``null``): it is
kept in mappings and lists and sent as ``null``.

Security: templates run in Jinja's ``ImmutableSandboxedEnvironment`` with
``StrictUndefined``. Only expressions are allowed (no ``{% %}`` statements), so
a template cannot loop; ``*`` and ``**`` are bounded so it cannot build huge
values; the context holds plain data only (no environment, no files).
"""

from __future__ import annotations

import contextvars
import functools
import json
import operator
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ManifestError

__all__ = [
    "JSON_NULL",
    "MAX_VALUE_SIZE",
    "Node",
    "TemplateError",
    "compile_string",
    "compile_tree",
    "compile_with_roles",
    "environment",
    "render_checked",
]

MAX_VALUE_SIZE = 100_000
_EXPR_ONLY = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
DIRECTIVES = {
    "$each": {"$each", "as", "do", "flatten"},
    "$if": {"$if", "then", "else"},
    "$switch": {"$switch", "cases", "default"},
    "$concat": {"$concat"},
    "$message": {"$message"},
}


class _JsonNull:
    """The template value ``null``: a JSON null that is sent, not omitted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "null"

    def __bool__(self) -> bool:
        return False


JSON_NULL = _JsonNull()


class TemplateError(Exception):
    """A template failed to compile or render. ``path`` locates it in the tree."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


# Methods a template may call on plain values; everything else is refused
# (padding and formatting methods can allocate gigabytes from one short call).
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith",
                    "split", "rsplit", "splitlines", "title", "capitalize", "casefold", "find",
                    "rfind", "count", "isdigit", "isalpha", "isalnum", "isspace", "islower",
                    "isupper", "removeprefix", "removesuffix", "replace"}),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
}
# Jinja's built-in filters a manifest may use (padding, wrapping and printf
# formatting are left out for the same reason).
_SAFE_FILTERS = frozenset({
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int",
    "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "select", "selectattr", "sort", "string", "sum",
    "title", "tojson", "trim", "unique", "upper", "urlencode",
})
MAX_EXPRESSION_NODES = 200
MAX_TEMPLATE_CHARS = 8192


def _weight(value: Any, limit: int = MAX_VALUE_SIZE + 1) -> int:
    """Size of *value* written out (strings by length, containers deeply), up to *limit*.

    A list can repeat one big string by reference: its length alone says nothing.
    """
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple)):
        return 1
    total = len(value)
    for item in value:
        if total > limit:
            break
        total += _weight(item, limit - total)
    return total


def _made(value: Any) -> Any:
    """Charge a value the template manufactured (not passed in) to the work budget."""
    if isinstance(value, (str, list, tuple)):
        _charge(_BUDGET.get(), _weight(value) // 64)
    return value


def _sized(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_VALUE_SIZE:
        raise SecurityError(f"{what} would build a value that is too large")
    return value


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with operations that cannot build unbounded values."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` can pad to any width: refused outright."""
        if super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise SecurityError("str.format() is not allowed in manifests")

        return refuse

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
                raise SecurityError("'**' is only allowed on numbers")
            if abs(right) > 64 or abs(left) > 2**32:
                raise SecurityError("'**' operands are too large")
            return left**right
        if op == "%":
            if isinstance(left, str):
                raise SecurityError("'%' string formatting is not allowed in manifests")
            return operator.mod(left, right)
        if op == "*":
            for seq, count in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                        and _weight(seq) * max(count, 0) > MAX_VALUE_SIZE):
                    raise SecurityError("'*' would build a value that is too large")
            return _made(operator.mul(left, right))
        result = operator.add(left, right)
        if _weight(result) > MAX_VALUE_SIZE:
            raise SecurityError("'+' would build a value that is too large")
        return _made(result)

    def call(__self, __context: Any, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, _PLAIN_TYPES):
            if name not in _SAFE_METHODS.get(type(owner), frozenset()):
                raise SecurityError(f"calling {type(owner).__name__}.{name}() is not allowed")
            if name == "replace" and isinstance(owner, str) and len(args) >= 2:
                _check_replace(owner, str(args[0]), str(args[1]))
        return _sized(super().call(__context, __obj, *args, **kwargs), f"{name}()")


_PLAIN_TYPES = (str, bytes, int, float, bool, complex, list, tuple, dict, set, frozenset)


def _check_replace(text: str, old: str, new: str) -> None:
    grows = text.count(old) if old else len(text) + 1
    if len(text) + grows * max(len(new) - len(old), 0) > MAX_VALUE_SIZE:
        raise SecurityError("replace would build a value that is too large")


def _join(value: Any, sep: str = "", attribute: Any = None) -> str:
    items = [str(v) for v in value] if attribute is None else None
    if items is None:
        raise SecurityError("join(attribute=...) is not allowed in manifests")
    size = sum(len(i) for i in items) + len(sep) * max(len(items) - 1, 0)
    if size > MAX_VALUE_SIZE:
        raise SecurityError("join would build a value that is too large")
    return sep.join(items)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    _check_replace(text, old, new)
    return text.replace(old, new) if count is None else text.replace(old, new, count)


def _json_filter(value: Any) -> str:
    """Serialize to compact JSON text (for fields a provider wants as a JSON string).

    Compact, as models emit tool-call arguments, so a replayed call is the text
    the model wrote.
    """
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"))


def _as_object(value: Any, key: str = "result") -> Any:
    """A JSON-object string becomes that object; anything else ``{key: value}``."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {key: value}


def _fromjson(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise TemplateError(f"fromjson: not JSON: {exc}") from None


def _path_segment(value: Any) -> str:
    """Percent-encode a value for use as one URL path segment (``/`` too)."""
    return urllib.parse.quote(str(value), safe="")


def _group_turns(messages: Iterable[Mapping[str, Any]],
                 role_map: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Group consecutive messages whose (renamed) role is the same.

    Returns ``[{"role": renamed_role, "messages": [original messages]}]``, for
    providers that require strictly alternating turns.
    """
    groups: list[dict[str, Any]] = []
    for msg in messages:
        role = (role_map or {}).get(msg["role"], msg["role"])
        if groups and groups[-1]["role"] == role:
            groups[-1]["messages"].append(msg)
        else:
            groups.append({"role": role, "messages": [msg]})
    return groups


_FILTERS: dict[str, Callable[..., Any]] = {
    "json": _json_filter,
    "fromjson": _fromjson,
    "as_object": _as_object,
    "path_segment": _path_segment,
    "group_turns": _group_turns,
}


def environment() -> jinja2.Environment:
    """A new sandboxed environment with the engine's filters."""
    env = _Env(undefined=jinja2.StrictUndefined, autoescape=False)
    for name in [n for n in env.filters if n not in _SAFE_FILTERS]:
        del env.filters[name]
    env.filters.update({"join": _join, "replace": _replace})
    env.filters.update(_FILTERS)
    # Globals that could reach outside the data are removed.
    for name in ("cycler", "joiner", "namespace", "lipsum"):
        env.globals.pop(name, None)
    env.globals["null"] = JSON_NULL
    return env


_ENV = environment()


# Work one render may do: $each iterations plus values converted to JSON data.
MAX_WORK = 250_000
_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("budget",
                                                                           default=None)
# Whether the render in progress produced a JSON null (then it is converted at the end).
_NULLS: contextvars.ContextVar[bool] = contextvars.ContextVar("nulls", default=False)
# The role table of the manifest being compiled, for $message nodes.
_ROLES: contextvars.ContextVar[Mapping[str, Node] | None] = contextvars.ContextVar(
    "roles", default=None)


def _charge(budget: list[int] | None, units: int) -> None:
    if budget is not None:
        budget[0] -= units
        if budget[0] < 0:
            raise TemplateError(f"the template does too much work (over {MAX_WORK} steps)")


def _plain(value: Any, budget: list[int] | None = None) -> Any:
    """Convert a rendered value to plain JSON data, or raise TemplateError."""
    _charge(budget, 1)
    if value is None or isinstance(value, (bool, int)):
        return value
    if value is JSON_NULL:
        _NULLS.set(True)
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TemplateError("a template produced a non-finite number")
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, jinja2.Undefined):
        raise TemplateError(f"undefined value: {value._undefined_message}")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"object keys must be strings, not {type(key).__name__}")
            out[str(key)] = _plain(item, budget)
        return out
    if isinstance(value, (list, tuple)):
        _charge(budget, len(value))
        return [_plain(item, budget) for item in value]
    raise TemplateError(f"a template produced a {type(value).__name__}, which is not JSON data")


class Node:
    """A compiled template tree node."""

    def render(self, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Literal(Node):
    value: Any

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class _Expr(Node):
    source: str
    fn: Callable[..., Any]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return _plain(_guard(self.source, lambda: self.fn(**ctx)), _BUDGET.get())


@dataclass(frozen=True, slots=True)
class _Text(Node):
    source: str
    template: jinja2.Template

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return _guard(self.source, lambda: self.template.render(ctx))


@dataclass(frozen=True, slots=True)
class _Map(Node):
    items: tuple[tuple[str, Node], ...]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for key, node in self.items:
            value = _at(key, node, ctx)
            if value is not None:
                out[key] = value
        # A mapping whose every entry is unset is itself unset (a literal {} stays).
        return out if out or not self.items else None


@dataclass(frozen=True, slots=True)
class _List(Node):
    items: tuple[Node, ...]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        out = []
        for index, node in enumerate(self.items):
            value = _at(index, node, ctx)
            if value is not None:
                out.append(value)
        return out


@dataclass(frozen=True, slots=True)
class _Each(Node):
    source: Node
    name: str
    body: Node
    flatten: bool

    def render(self, ctx: Mapping[str, Any]) -> Any:
        items = self.source.render(ctx)
        if items is None:
            return None
        if isinstance(items, (str, Mapping)) or not isinstance(items, list):
            raise TemplateError(f"$each needs a list, got {type(items).__name__}")
        _charge(_BUDGET.get(), len(items))
        out: list[Any] = []
        for item in items:
            value = self.body.render({**ctx, self.name: item})
            if value is None:
                continue
            if self.flatten and isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
        return out


@dataclass(frozen=True, slots=True)
class _If(Node):
    cond: Node
    then: Node
    otherwise: Node | None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        if self.cond.render(ctx):
            return _at("then", self.then, ctx)
        return _at("else", self.otherwise, ctx) if self.otherwise is not None else None


@dataclass(frozen=True, slots=True)
class _Switch(Node):
    value: Node
    cases: Mapping[str, Node]
    default: Node | None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        key = self.value.render(ctx)
        node = self.cases.get(str(key)) if key is not None else None
        if node is not None:
            return _at(("cases", str(key)), node, ctx)
        return _at("default", self.default, ctx) if self.default is not None else None


@dataclass(frozen=True, slots=True)
class _Concat(Node):
    parts: tuple[Node, ...]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        out: list[Any] = []
        for index, node in enumerate(self.parts):
            value = _at(("$concat", index), node, ctx)
            if isinstance(value, list):
                out.extend(value)
            elif value is not None:
                out.append(value)
        return out


@dataclass(frozen=True, slots=True)
class _Message(Node):
    source: Node
    roles: Mapping[str, Node]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        message = self.source.render(ctx)
        if not isinstance(message, Mapping):
            raise TemplateError(f"$message needs a message, got {type(message).__name__}")
        role = str(message.get("role"))
        node = self.roles.get(role) or self.roles.get("default")
        if node is None:
            return None
        key = role if role in self.roles else "default"
        return _at(("message", key), node, {**ctx, "m": message})


def _at(where: Any, node: Node, ctx: Mapping[str, Any]) -> Any:
    """Render a child, prefixing its location to any TemplateError."""
    try:
        return node.render(ctx)
    except TemplateError as exc:
        prefix = where if isinstance(where, tuple) else (where,)
        raise TemplateError(str(exc), (*prefix, *exc.path)) from None


def _guard(source: str, fn: Callable[[], Any]) -> Any:
    """Run a Jinja evaluation and turn every failure into a TemplateError."""
    try:
        return fn()
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"refused by the sandbox in {source!r}: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"undefined in {source!r}: {exc}") from None
    except RecursionError:
        raise TemplateError(f"recursion too deep in {source!r}") from None
    except Exception as exc:  # any evaluation error inside the sandbox
        raise TemplateError(f"{type(exc).__name__} in {source!r}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def compile_string(source: str) -> Node:
    """Compile one string leaf (cached: nodes are immutable, manifests repeat leaves)."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return _Literal(source)
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_CHARS} characters: "
                            f"{source[:60]!r}...")
    try:
        return _compile_checked(source)
    except RecursionError:
        raise TemplateError(f"template nested too deeply: {source[:60]!r}...") from None


def _compile_checked(source: str) -> Node:
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error in {source!r}: {exc.message}") from None
    for stmt in tree.body:
        if not isinstance(stmt, jinja2.nodes.Output):
            raise TemplateError(f"only {{{{ expressions }}}} are allowed, not statements: "
                                f"{source!r}")
    if sum(1 for _ in tree.find_all(jinja2.nodes.Node)) > MAX_EXPRESSION_NODES:
        raise TemplateError(f"expression too large (over {MAX_EXPRESSION_NODES} nodes): "
                            f"{source[:60]!r}...")
    match = _EXPR_ONLY.match(source)
    if match and "{{" not in match["expr"] and "}}" not in match["expr"]:
        try:
            fn = _ENV.compile_expression(match["expr"], undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"expression syntax error in {source!r}: {exc.message}") from None
        return _Expr(source, fn)
    return _Text(source, _ENV.from_string(source))


def compile_tree(tree: Any, path: tuple[str | int, ...] = ()) -> Node:
    """Compile a YAML template tree; raise TemplateError with the failing path."""
    try:
        if isinstance(tree, str):
            return compile_string(tree)
        if isinstance(tree, list):
            return _List(tuple(compile_tree(item, (*path, i)) for i, item in enumerate(tree)))
        if isinstance(tree, Mapping):
            return _compile_mapping(tree, path)
        if tree is None or isinstance(tree, (bool, int, float)):
            return _Literal(tree)
    except TemplateError as exc:
        if exc.path:
            raise
        raise TemplateError(str(exc), path) from None
    raise TemplateError(f"unsupported value of type {type(tree).__name__}", path)


def _compile_mapping(tree: Mapping[str, Any], path: tuple[str | int, ...]) -> Node:
    keys = {str(k) for k in tree}
    directive = [k for k in keys if k.startswith("$")]
    if not directive:
        return _Map(tuple((str(k), compile_tree(v, (*path, str(k)))) for k, v in tree.items()))
    if len(directive) > 1 or directive[0] not in DIRECTIVES:
        known = ", ".join(sorted(DIRECTIVES))
        raise TemplateError(f"unknown directive {sorted(directive)}; known: {known}", path)
    name = directive[0]
    extra = keys - DIRECTIVES[name]
    if extra:
        raise TemplateError(f"{name} does not take {sorted(extra)}", path)
    if name == "$each":
        return _compile_each(tree, path)
    if name == "$message":
        roles = _ROLES.get()
        if roles is None:
            raise TemplateError("$message needs a chat.message role table", path)
        return _Message(compile_tree(tree["$message"], (*path, "$message")), roles)
    if name == "$concat":
        parts = tree["$concat"]
        if not isinstance(parts, list):
            raise TemplateError("$concat needs a list", path)
        return _Concat(tuple(compile_tree(p, (*path, "$concat", i)) for i, p in enumerate(parts)))
    if name == "$if":
        if "then" not in tree:
            raise TemplateError("$if needs 'then'", path)
        other = tree.get("else")
        return _If(compile_tree(tree["$if"], (*path, "$if")),
                   compile_tree(tree["then"], (*path, "then")),
                   compile_tree(other, (*path, "else")) if "else" in tree else None)
    cases = tree.get("cases") or {}
    if not isinstance(cases, Mapping):
        raise TemplateError("$switch 'cases' must be a mapping", path)
    return _Switch(
        compile_tree(tree["$switch"], (*path, "$switch")),
        {str(k): compile_tree(v, (*path, "cases", str(k))) for k, v in cases.items()},
        compile_tree(tree["default"], (*path, "default")) if "default" in tree else None,
    )


def _compile_each(tree: Mapping[str, Any], path: tuple[str | int, ...]) -> Node:
    name = tree.get("as")
    if not isinstance(name, str) or not name.isidentifier():
        raise TemplateError("$each needs 'as': an identifier", path)
    if "do" not in tree:
        raise TemplateError("$each needs 'do'", path)
    flatten = tree.get("flatten", False)
    if not isinstance(flatten, bool):
        raise TemplateError("$each 'flatten' must be true or false", path)
    return _Each(compile_tree(tree["$each"], (*path, "$each")), name,
                 compile_tree(tree["do"], (*path, "do")), flatten)


def compile_with_roles(tree: Any, roles: Mapping[str, Node] | None,
                       path: tuple[str | int, ...] = ()) -> Node:
    """:func:`compile_tree`, with *roles* as the table ``$message`` renders through."""
    token = _ROLES.set(roles)
    try:
        return compile_tree(tree, path)
    finally:
        _ROLES.reset(token)


def _nulls_to_none(value: Any) -> Any:
    if value is JSON_NULL:
        return None
    if isinstance(value, dict):
        return {k: _nulls_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls_to_none(v) for v in value]
    return value


def render_checked(node: Node, ctx: Mapping[str, Any], what: str, provider: str) -> Any:
    """Render within a work budget; turn a TemplateError into a ManifestError naming where."""
    token = _BUDGET.set([MAX_WORK])
    nulls = _NULLS.set(False)
    try:
        value = node.render(ctx)
        return _nulls_to_none(value) if _NULLS.get() else value
    except TemplateError as exc:
        key = (*what.split("."), *exc.path)
        where = ".".join(str(p) for p in key)
        raise ManifestError(f"{where}: {exc}", provider=provider, key=key,
                            detail=str(exc)) from None
    finally:
        _BUDGET.reset(token)
        _NULLS.reset(nulls)
