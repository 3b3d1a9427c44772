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
a template cannot loop, recurse or define macros; the context holds plain data
only (no environment, no files). Only the listed filters and plain-value
methods may be called; ``str.format``, ``%`` on strings, padding methods,
class methods (``dict.fromkeys``) and the ``lipsum``/``cycler``/``joiner``/
``namespace`` globals are refused.

Bounds: every :func:`render_checked` (and every expression rendered outside
one) runs within a budget of :data:`MAX_WORK` steps and :data:`MAX_SECONDS`
of wall-clock time (``time.monotonic``, read while charging; no threads). A
step is one item that a filter, test, method call, operator, comparison,
slice, ``$each`` or tree node takes in or produces: a range counts its length,
a string one step per :data:`BYTES_PER_STEP` bytes (one per character where
it is iterated or split), iterators that filters return are charged item by
item, and a long string the output repeats is charged again each time. No
single operation may add more than :data:`MAX_VALUE_SIZE` items or characters
to what it was given (``*``, ``range``, ``replace``, ``join`` separators). So
each allocation is either paid for before it is made or proportional to values
the render already holds (a slice, a method's result, parsed JSON), a render
builds at most about ``MAX_WORK * BYTES_PER_STEP`` bytes, and it ends within
about a second. A limit that is hit raises
:class:`TemplateError` (a :class:`~engine.errors.ManifestError` from
:func:`render_checked`) naming the template and the limit: ``work limit``,
``time limit`` or ``size limit``. The limits are generous for real requests:
1,000 messages with a 1 MiB text and 128 tools take about a tenth of the steps.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import operator
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any, cast

import jinja2
import jinja2.compiler
import jinja2.filters
import jinja2.nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ManifestError
from .patterns import MAX_SCAN, SEARCH_SECONDS, Pattern, PatternError, compile_pattern

__all__ = [
    "BYTES_PER_STEP",
    "JSON_NULL",
    "MAX_SECONDS",
    "MAX_VALUE_SIZE",
    "MAX_WORK",
    "Node",
    "TemplateError",
    "compile_string",
    "compile_tree",
    "compile_with_roles",
    "deferred",
    "environment",
    "render_checked",
]

# Most one operation may add to its inputs (items or characters).
MAX_VALUE_SIZE = 100_000
# Steps of work one render may do, and its wall-clock deadline.
MAX_WORK = 1_000_000
MAX_SECONDS = 1.0
# Bytes of string that cost one step.
BYTES_PER_STEP = 64
# Strings shorter than this cost one step (their bytes are not looked up).
_SHORT = 64
# Charges between two looks at the clock.
_CLOCK_EVERY = 16
# Strings at least this long are charged again each time the output repeats them.
ALIAS_MIN = 256
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


class _LimitError(TemplateError):
    """The render ran out of its work or time budget."""


# ---------------------------------------------------------------- the budget

class _Budget:
    """The work and time one render may still spend."""

    __slots__ = ("deadline", "left", "seen", "ticks")

    def __init__(self) -> None:
        self.left = MAX_WORK
        self.deadline = time.monotonic() + MAX_SECONDS
        self.seen: dict[int, str] = {}
        self.ticks = 0

    def charge(self, steps: int) -> None:
        self.left -= steps
        self.ticks -= 1
        if self.left < 0 or self.ticks < 0:
            self._check()

    def _check(self) -> None:
        if self.left < 0:
            raise _LimitError(f"over the work limit ({MAX_WORK} steps)")
        self.ticks = _CLOCK_EVERY
        if time.monotonic() > self.deadline:
            raise _LimitError(f"over the time limit ({MAX_SECONDS:g} s)")

    def output(self, text: str) -> None:
        """A long string in the output: free once, charged each time it repeats."""
        if id(text) in self.seen:
            self.charge(_size(text))
        else:
            self.seen[id(text)] = text  # kept alive, so its id is not reused


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget",
                                                                         default=None)
_SCALARS = frozenset({int, float, bool, type(None)})
_SIZED: tuple[type[Sized], ...] = (list, tuple, dict, set, frozenset, range, bytes,
                                  type({}.keys()), type({}.values()), type({}.items()))


def _size(value: Any) -> int:
    """Steps to hold or pass over *value* one level deep (a short string is one)."""
    if type(value) in _SCALARS:
        return 1
    if isinstance(value, str):
        return 1 if len(value) < _SHORT else 1 + sys.getsizeof(value) // BYTES_PER_STEP
    if isinstance(value, _SIZED):
        return 1 + len(value)
    return 1


def _walk(value: Any, limit: int, text: Callable[[str], int]) -> int:
    """Deep size of *value* (strings measured by *text*), counted up to about *limit*."""
    if type(value) in _SCALARS:
        return 1
    if isinstance(value, str):
        return text(value)
    if isinstance(value, range):
        return 1 + len(value)
    parts: Iterable[Any]
    if isinstance(value, dict):
        parts = itertools.chain.from_iterable(value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        parts = value
    else:
        return 1
    total = 1
    for part in parts:
        if total > limit:
            break
        total += _walk(part, limit - total, text)
    return total


def _shallow(values: Iterable[Any], budget: _Budget) -> int:
    """Steps to pass over each of *values* once."""
    total = 0
    for value in values:
        total += _size(value)
    return total


def _deep(values: Iterable[Any], budget: _Budget) -> int:
    """Steps to walk each of *values* whole (to stringify or compare it)."""
    total = 0
    for value in values:
        total += _walk(value, max(budget.left - total, 0), _size)
    return total


def _items(values: Iterable[Any], budget: _Budget) -> int:
    """Steps to iterate each of *values* (a string yields one item per character)."""
    total = 0
    for value in values:
        total += 1 + len(value) if isinstance(value, str) else _size(value)
    return total


def _one(values: Iterable[Any], budget: _Budget) -> int:
    return 1


def _charge(steps: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(steps)


def _counted(items: Iterator[Any], budget: _Budget) -> Iterator[Any]:
    for item in items:
        budget.charge(1)
        yield item


def _made(value: Any, budget: _Budget | None, inputs: tuple[Any, ...] = ()) -> Any:
    """Charge a value an operation produced (not one of its *inputs*).

    Iterators are charged item by item as they are consumed.
    """
    kind = type(value)
    if budget is None or kind in _SCALARS or (kind is str and len(value) < _SHORT):
        return value
    if kind not in _SIZED and isinstance(value, Iterator):
        return _counted(value, budget)
    steps = _size(value)
    if steps > 1 and all(value is not given for given in inputs):
        budget.charge(steps)
    return value


def _growth(seq: Any, count: Any) -> int:
    """How much ``seq * count`` adds to ``seq``, counted up to just over the size limit."""
    if not isinstance(seq, (str, list, tuple)) or not isinstance(count, int):
        return 0
    unit = len(seq) if isinstance(seq, str) else _walk(seq, MAX_VALUE_SIZE + 1, len) - 1
    return unit * max(count - 1, 0)


def _too_large(what: str) -> SecurityError:
    """*what* ("'*' would add") exceeds the size limit."""
    return SecurityError(f"size limit: {what} more than {MAX_VALUE_SIZE} items or characters")


# ---------------------------------------------------------------- the sandbox

# Methods a template may call on plain values; everything else is refused
# (padding and formatting methods can allocate gigabytes from one short call,
# class methods such as dict.fromkeys build values of any size).
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "startswith", "endswith",
                    "split", "rsplit", "splitlines", "title", "capitalize", "casefold", "find",
                    "rfind", "count", "isdigit", "isalpha", "isalnum", "isspace", "islower",
                    "isupper", "removeprefix", "removesuffix", "replace"}),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"index", "count"}),
    tuple: frozenset({"index", "count"}),
}
# Jinja's built-in filters a manifest may use (padding, wrapping, batching and
# printf formatting are left out for the same reason).
_SAFE_FILTERS = frozenset({
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int",
    "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "select", "selectattr", "sort", "string", "sum",
    "title", "tojson", "trim", "unique", "upper", "urlencode",
})
# What a filter's arguments cost before it runs: these look at one item (1
# step); these iterate their input (a string by character); these pass over it
# once; any other may stringify it whole (its deep size).
_Cost = Callable[[Iterable[Any], _Budget], int]
_FILTER_COSTS: dict[str, _Cost] = {
    **dict.fromkeys(("abs", "attr", "count", "d", "default", "first", "last", "length",
                     "round"), _one),
    **dict.fromkeys(("dictsort", "group_turns", "items", "list", "map", "max", "min", "reject",
                     "rejectattr", "select", "selectattr", "sort", "sum", "unique"), _items),
    **dict.fromkeys(("as_object", "float", "fromjson", "int", "reverse"), _shallow),
    "join": lambda values, budget: _items(values, budget) + _deep(values, budget),
}
# Jinja's tests that may scan their arguments (the others look at a type or a number).
_SCANNING_TESTS = frozenset({"in", "==", "eq", "equalto", "!=", "ne", "<", "lt", "lessthan",
                             "<=", "le", ">", "gt", "greaterthan", ">=", "ge", "lower",
                             "upper"})
# String methods that make one item per character or word.
_SPLITTING = frozenset({"split", "rsplit", "splitlines"})
MAX_EXPRESSION_NODES = 200
MAX_TEMPLATE_CHARS = 8192


def _metered(fn: Callable[..., Any], cost: _Cost) -> Callable[..., Any]:
    """*fn* (a filter or test), charging its arguments by *cost* and its result by size."""
    @functools.wraps(fn)  # keeps Jinja's pass_context/pass_environment marks
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _BUDGET.get()
        if budget is None:  # Jinja folding constants at compile time
            return fn(*args, **kwargs)
        budget.charge(cost(args, budget) + (cost(kwargs.values(), budget) if kwargs else 0))
        return _made(fn(*args, **kwargs), budget, args)
    return run


def _metered_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """*fn* (a test that may scan its arguments), charging their sizes."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget.charge(_shallow(args, budget) + _shallow(kwargs.values(), budget))
        return fn(*args, **kwargs)
    return run


def _owner_name(owner: Any) -> str:
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def _check_call(obj: Any, args: tuple[Any, ...]) -> None:
    """Refuse a bound method unless it is a listed method of a plain value."""
    owner = getattr(obj, "__self__", None)
    if owner is None:
        return
    name = getattr(obj, "__name__", "")
    if isinstance(owner, type) or name not in _SAFE_METHODS.get(type(owner), frozenset()):
        raise SecurityError(f"calling {_owner_name(owner)}.{name}() is not allowed")
    if name == "replace" and isinstance(owner, str) and len(args) >= 2:
        _check_replace(owner, str(args[0]), str(args[1]))


_Frame = jinja2.compiler.Frame


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Jinja's code generator, with ``~``, comparisons and slices routed through the
    sandbox (which charges them) instead of compiled to bare Python operators."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: _Frame) -> None:
        self.write("environment.sandbox_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: jinja2.nodes.Compare, frame: _Frame) -> None:
        self.write("environment.sandbox_compare(")
        self.visit(node.expr, frame)
        for operand in node.ops:
            self.write(f", {operand.op!r}, ")
            self.visit(operand.expr, frame)
        self.write(")")

    def visit_Getitem(self, node: jinja2.nodes.Getitem, frame: _Frame) -> None:
        if not isinstance(node.arg, jinja2.nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.sandbox_slice(")
        self.visit(node.node, frame)
        self.write(", ")
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
            self.write(", ")
        self.write(")")


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gteq": operator.ge,
    "lt": operator.lt, "lteq": operator.le,
    "in": lambda item, seq: item in seq, "notin": lambda item, seq: item not in seq,
}


def _finalize(value: Any) -> Any:
    """Charge a value a text template is about to stringify into its output."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(_walk(value, max(budget.left, 0), _size))
    return value


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox: operations are charged to the budget and cannot amplify values."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` can pad to any width: refused outright."""
        if super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise SecurityError("str.format() is not allowed in manifests")

        return refuse

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            return _power(left, right)
        if op == "%":
            if isinstance(left, str):
                raise SecurityError("'%' string formatting is not allowed in manifests")
            return operator.mod(left, right)
        if op == "*":
            if max(_growth(left, right), _growth(right, left)) > MAX_VALUE_SIZE:
                raise _too_large("'*' would add")
            return _made(operator.mul(left, right), _BUDGET.get())
        _charge(_size(left) + _size(right))
        return operator.add(left, right)

    def sandbox_concat(self, values: tuple[Any, ...]) -> str:
        """``a ~ b``: operands are charged before they are stringified and joined."""
        for value in values:
            _finalize(value)
        return "".join([str(value) for value in values])

    def sandbox_compare(self, left: Any, *chain: Any) -> Any:
        """``a < b < c``, ``a in b``: each comparison is charged its operands' sizes."""
        result: Any = True
        for op, right in zip(chain[::2], chain[1::2], strict=True):
            _charge(_size(left) + _size(right))
            result = _COMPARE[op](left, right)
            if not result:
                return result
            left = right
        return result

    def sandbox_slice(self, value: Any, start: Any, stop: Any, step: Any) -> Any:
        """``value[a:b]``: the copy is charged."""
        return _made(value[start:stop:step], _BUDGET.get(), (value,))

    def call(__self, __context: Any, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        _check_call(__obj, args)
        owner = getattr(__obj, "__self__", None)
        inputs = (owner, *args, *kwargs.values())
        budget = _BUDGET.get()
        if budget is not None:
            splits = isinstance(owner, str) and getattr(__obj, "__name__", "") in _SPLITTING
            budget.charge(_shallow(inputs, budget) + (len(str(owner)) if splits else 0))
        return _made(super().call(__context, __obj, *args, **kwargs), budget, inputs)


def _power(left: Any, right: Any) -> Any:
    if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
        raise SecurityError("'**' is only allowed on numbers")
    if abs(right) > 64 or abs(left) > 2**32:
        raise SecurityError("size limit: '**' operands are too large")
    return left**right


def _check_replace(text: str, old: str, new: str) -> None:
    grows = text.count(old) if old else len(text) + 1
    if grows * max(len(new) - len(old), 0) > MAX_VALUE_SIZE:
        raise _too_large("replace would add")


def _join(value: Any, sep: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        raise SecurityError("join(attribute=...) is not allowed in manifests")
    items = [str(v) for v in value]
    if len(sep) * max(len(items) - 1, 0) > MAX_VALUE_SIZE:
        raise _too_large("join's separators would add")
    return sep.join(items)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    _check_replace(text, old, new)
    return text.replace(old, new) if count is None else text.replace(old, new, count)


@functools.lru_cache(maxsize=64)
def _pattern(source: str) -> Pattern:
    try:
        return compile_pattern(source)
    except PatternError as error:
        raise SecurityError(f"regex_replace: {error}") from None


def _regex_replace(value: Any, pattern: str, new: str) -> str:
    """Each match of *pattern* (case-insensitive, bounded in time) in *value* replaced
    by *new*: for names a provider restricts to some characters."""
    text = str(value)
    if len(text) > MAX_SCAN:
        raise _too_large("regex_replace would scan")
    if not isinstance(new, str) or len(new) > 64 or "\\" in new:
        raise SecurityError("regex_replace takes a plain replacement of at most 64 characters")
    try:
        return str(_pattern(str(pattern)).compiled.sub(new, text, timeout=SEARCH_SECONDS))
    except TimeoutError:
        raise SecurityError(f"regex_replace: {pattern!r} ran out of time") from None


def _range(*args: int) -> range:
    """``range``, at most :data:`MAX_VALUE_SIZE` long (it is charged by its length)."""
    numbers = range(*args)
    if len(numbers) > MAX_VALUE_SIZE:
        raise _too_large("range() would make")
    return numbers


@jinja2.pass_environment
def _sum(environment: jinja2.Environment, value: Any, attribute: Any = None,
         start: Any = 0) -> Any:
    """Jinja's ``sum``, for numbers only (adding lists one by one is quadratic)."""
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise SecurityError("sum() adds numbers only")
    return jinja2.filters.sync_do_sum(environment, value, attribute, start)


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
    "join": _join,
    "replace": _replace,
    "regex_replace": _regex_replace,
    "sum": _sum,
    "json": _json_filter,
    "fromjson": _fromjson,
    "as_object": _as_object,
    "path_segment": _path_segment,
    "group_turns": _group_turns,
}


def environment() -> jinja2.Environment:
    """A new sandboxed environment with the engine's filters, every one metered."""
    env = _Env(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize)
    filters = {n: f for n, f in env.filters.items() if n in _SAFE_FILTERS}
    filters.update(_FILTERS)
    env.filters = {name: _metered(fn, _FILTER_COSTS.get(name, _deep))
                   for name, fn in filters.items()}
    tests = cast(dict[str, Callable[..., Any]], env.tests)
    env.tests = {name: _metered_test(fn) if name in _SCANNING_TESTS else fn
                 for name, fn in tests.items()}
    # Globals that could reach outside the data, or build values unmetered, are removed.
    for name in ("cycler", "joiner", "namespace", "lipsum"):
        env.globals.pop(name, None)
    env.globals["null"] = JSON_NULL
    env.globals["range"] = _range
    return env


_ENV = environment()


# Whether the render in progress produced a JSON null (then it is converted at the end).
_NULLS: contextvars.ContextVar[bool] = contextvars.ContextVar("nulls", default=False)
# The role table of the manifest being compiled, for $message nodes.
_ROLES: contextvars.ContextVar[Mapping[str, Node] | None] = contextvars.ContextVar(
    "roles", default=None)
# Whether string leaves are compiled when first rendered (see :func:`deferred`).
_DEFER: contextvars.ContextVar[bool] = contextvars.ContextVar("defer", default=False)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within this block, compiled trees compile each Jinja leaf when it first renders.

    Only for content already checked in full by this engine (the compiled-manifest
    cache): a leaf's errors were reported then, and a call that renders a few of a
    manifest's templates (one role, one operation, one model's overrides) does not pay
    for compiling the rest.
    """
    token = _DEFER.set(True)
    try:
        yield
    finally:
        _DEFER.reset(token)


def _plain(value: Any, budget: _Budget | None = None) -> Any:
    """Convert a rendered value to plain JSON data, or raise TemplateError.

    Containers are charged their length to *budget*, and long strings each
    time they repeat.
    """
    kind = type(value)  # the exact common types first: this runs for every rendered value
    if kind is str:
        if budget is not None and len(value) >= ALIAS_MIN:
            budget.output(value)
        return value
    if kind is dict:
        if budget is not None:
            budget.charge(1 + len(value))
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TemplateError(f"object keys must be strings, not "
                                        f"{type(key).__name__}")
                key = str(key)
            plain[key] = _plain(item, budget)
        return plain
    if kind is list:
        if budget is not None:
            budget.charge(1 + len(value))
        return [_plain(item, budget) for item in value]
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
        if budget is not None and len(value) >= ALIAS_MIN:
            budget.output(value)
        return str(value)
    if isinstance(value, jinja2.Undefined):
        raise TemplateError(f"undefined value: {value._undefined_message}")
    if isinstance(value, Mapping):
        if budget is not None:
            budget.charge(1 + len(value))
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"object keys must be strings, not {type(key).__name__}")
            out[str(key)] = _plain(item, budget)
        return out
    if isinstance(value, (list, tuple)):
        if budget is not None:
            budget.charge(1 + len(value))
        return [_plain(item, budget) for item in value]
    raise TemplateError(f"a template produced a {type(value).__name__}, which is not JSON data")


class Node:
    """A compiled template tree node."""

    def render(self, ctx: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def read(self, ctx: Mapping[str, Any]) -> Any:
        """What a directive reads (an ``$each`` list, an ``$if`` test, a ``$switch`` key,
        a ``$message``): the rendered value, or, where that is the context's own plain
        data, the data itself, not a converted copy (it is not output)."""
        return self.render(ctx)


@dataclass(frozen=True, slots=True)
class _Literal(Node):
    value: Any

    def render(self, ctx: Mapping[str, Any]) -> Any:
        return self.value


# Expressions made only of names, dict keys, constants, ``a if b else c``, ``and``, ``or``,
# ``not`` and the tests ``none`` / ``true`` / ``false`` are evaluated
# directly (:func:`_fast`); anything else, and any step that is not a present key of a
# plain dict (a miss, an object, a dict method's name), goes to Jinja, so the value is
# always the one Jinja gives (a property test checks it).
_NOT_KEYS = frozenset(dir(dict))
_TESTS: dict[str, Callable[[Any], bool]] = {
    "none": lambda v: v is None, "true": lambda v: v is True, "false": lambda v: v is False}
Fast = Callable[[dict[str, Any]], Any]


class _Slow(Exception):
    """This evaluation needs Jinja."""


def _name(name: str) -> Fast:
    def get(ctx: dict[str, Any]) -> Any:
        if name not in ctx:
            raise _Slow
        return ctx[name]
    return get


def _key(base: Fast, key: str) -> Fast:
    def get(ctx: dict[str, Any]) -> Any:
        value = base(ctx)
        if type(value) is not dict or key not in value:
            raise _Slow
        return value[key]
    return get


def _negated(inner: Fast) -> Fast:
    return lambda ctx: not inner(ctx)


def _both(left: Fast, right: Fast) -> Fast:
    return lambda ctx: left(ctx) and right(ctx)


def _either(left: Fast, right: Fast) -> Fast:
    return lambda ctx: left(ctx) or right(ctx)


def _fast(node: jinja2.nodes.Node) -> Fast | None:
    """A direct evaluator of *node*, or None when Jinja must evaluate it."""
    nodes = jinja2.nodes
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return _name(node.name)
    if isinstance(node, nodes.Const) and (node.value is None or
                                          isinstance(node.value, (str, int, float, bool))):
        value = node.value
        return lambda ctx: value
    if isinstance(node, nodes.Getattr) and node.attr not in _NOT_KEYS:
        base = _fast(node.node)
        return _key(base, node.attr) if base is not None else None
    if isinstance(node, nodes.Not):
        inner = _fast(node.node)
        return _negated(inner) if inner is not None else None
    if isinstance(node, (nodes.And, nodes.Or)):
        left, right = _fast(node.left), _fast(node.right)
        if left is None or right is None:
            return None
        return _both(left, right) if isinstance(node, nodes.And) else _either(left, right)
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = _fast(node.test), _fast(node.expr1), _fast(node.expr2)
        if test is None or yes is None or no is None:
            return None
        return lambda ctx: yes(ctx) if test(ctx) else no(ctx)
    if (isinstance(node, nodes.Test) and node.name in _TESTS and not node.args
            and not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None):
        inner, check = _fast(node.node), _TESTS[node.name]
        return (lambda ctx: check(inner(ctx))) if inner is not None else None
    return None


def _fast_expression(tree: jinja2.nodes.Template) -> Fast | None:
    """The direct evaluator of a ``{{ expr }}``-only template's expression, if any."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], jinja2.nodes.Output):
        return None
    parts = tree.body[0].nodes
    return _fast(parts[0]) if len(parts) == 1 else None


# The types of the plain data the engine puts in a template context.
_CONTEXT_DATA = frozenset((dict, list, str, int, float, bool, type(None)))


@dataclass(frozen=True, slots=True)
class _Expr(Node):
    source: str
    fn: Callable[..., Any]
    fast: Fast | None = None  # the direct evaluator, when the expression has one

    def render(self, ctx: Mapping[str, Any]) -> Any:
        if self.fast is not None and type(ctx) is dict:
            try:
                value = self.fast(ctx)
            except _Slow:
                pass
            else:  # most body keys are unset on most calls: None needs no conversion
                return None if value is None else _plain(value, _BUDGET.get())
        return _plain(_guard(self.source, lambda: self.fn(**ctx)), _BUDGET.get())

    def read(self, ctx: Mapping[str, Any]) -> Any:
        if self.fast is not None and type(ctx) is dict:
            try:
                value = self.fast(ctx)
            except _Slow:
                pass
            else:
                if type(value) in _CONTEXT_DATA:  # read from the context as it is
                    return value
        return self.render(ctx)  # anything else is converted, as rendering does


class _Deferred(Node):
    """A string leaf compiled when it first renders (see :func:`deferred`)."""

    __slots__ = ("_node", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._node: Node | None = None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        node = self._node
        if node is None:  # two threads may both compile: the same node, no harm
            node = self._node = compile_string(self.source)
        return node.render(ctx)

    def read(self, ctx: Mapping[str, Any]) -> Any:
        node = self._node
        if node is None:
            node = self._node = compile_string(self.source)
        return node.read(ctx)


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
        _charge(1 + len(self.items))
        out: dict[str, Any] = {}
        for key, node in self.items:
            try:  # _at, inlined: a body renders every key on every call
                value = node.render(ctx)
            except TemplateError as exc:
                raise TemplateError(str(exc), (key, *exc.path)) from None
            if value is not None:
                out[key] = value
        # A mapping whose every entry is unset is itself unset (a literal {} stays).
        return out if out or not self.items else None


@dataclass(frozen=True, slots=True)
class _List(Node):
    items: tuple[Node, ...]

    def render(self, ctx: Mapping[str, Any]) -> Any:
        _charge(1 + len(self.items))
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
        items = self.source.read(ctx)
        if items is None:
            return None
        if isinstance(items, (str, Mapping)) or not isinstance(items, list):
            raise TemplateError(f"$each needs a list, got {type(items).__name__}")
        budget = _BUDGET.get()
        out: list[Any] = []
        for item in items:
            if budget is not None:
                budget.charge(1)
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
        if self.cond.read(ctx):
            return _at("then", self.then, ctx)
        return _at("else", self.otherwise, ctx) if self.otherwise is not None else None


@dataclass(frozen=True, slots=True)
class _Switch(Node):
    value: Node
    cases: Mapping[str, Node]
    default: Node | None

    def render(self, ctx: Mapping[str, Any]) -> Any:
        key = self.value.read(ctx)
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
        message = self.source.read(ctx)
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
    """Run a Jinja evaluation within the render's budget (its own if there is none)."""
    if _BUDGET.get() is not None:
        return _evaluate(source, fn)
    token = _BUDGET.set(_Budget())
    try:
        return _evaluate(source, fn)
    finally:
        _BUDGET.reset(token)


def _evaluate(source: str, fn: Callable[[], Any]) -> Any:
    """Run a Jinja evaluation and turn every failure into a TemplateError."""
    try:
        return fn()
    except _LimitError as exc:
        raise TemplateError(f"{exc} in {source!r}") from None
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


def _is_template(source: str) -> bool:
    return "{{" in source or "{%" in source or "{#" in source


@functools.lru_cache(maxsize=4096)
def compile_string(source: str) -> Node:
    """Compile one string leaf (cached: nodes are immutable, manifests repeat leaves)."""
    if not _is_template(source):
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
        return _Expr(source, fn, _fast_expression(tree))
    return _Text(source, _ENV.from_string(source))


def compile_tree(tree: Any, path: tuple[str | int, ...] = ()) -> Node:
    """Compile a YAML template tree; raise TemplateError with the failing path."""
    try:
        if isinstance(tree, str):
            return _Deferred(tree) if _DEFER.get() and _is_template(tree) else compile_string(tree)
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
    """Render within a budget; turn a TemplateError into a ManifestError naming where."""
    token = _BUDGET.set(_Budget())
    nulls = _NULLS.set(False)
    try:
        value = node.render(ctx)
        return _nulls_to_none(value) if _NULLS.get() else value
    except RecursionError:
        raise ManifestError(f"{what}: a value nested too deeply", provider=provider,
                            key=tuple(what.split(".")), detail="nested too deeply") from None
    except TemplateError as exc:
        key = (*what.split("."), *exc.path)
        where = ".".join(str(p) for p in key)
        raise ManifestError(f"{where}: {exc}", provider=provider, key=key,
                            detail=str(exc)) from None
    finally:
        _BUDGET.reset(token)
        _NULLS.reset(nulls)
