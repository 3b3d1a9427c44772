"""JMESPath expressions, compiled once, searched many times.

:func:`compile_path` parses an expression at manifest load time (raising
:class:`PathError` on bad syntax) and turns its syntax tree into nested Python
closures for the node types manifests use on the hot path (fields, indexes,
sub-expressions, ``!``, ``&&``, ``||``, ``==``/``!=``, literals, ``frame()``); any other
node is evaluated by jmespath's own interpreter, so semantics are exactly
jmespath's (a property test checks the two agree). :meth:`Path.search` never
raises anything but :class:`PathError` (a type error inside an expression on
odd data is a data problem the caller classifies as ``malformed_response``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.parser
import jmespath.visitor

__all__ = ["Path", "PathError", "Steps", "compile_path", "current_frame", "walker"]

# The stream frame being mapped, for ``frame()``; set by the stream mapper.
current_frame: contextvars.ContextVar[Any] = contextvars.ContextVar("frame", default=None)


class PathError(Exception):
    """A JMESPath expression failed to compile or to evaluate."""


class _Functions(jmespath.functions.Functions):
    """Extra functions available to manifests."""

    @jmespath.functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_lower_eq(self, value: str | None, other: str) -> bool:
        """Case-insensitive string equality: ``lower_eq(type, 'Error')``."""
        return value is not None and value.lower() == other.lower()

    @jmespath.functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_strip_prefix(self, value: str | None, prefix: str) -> str | None:
        """*value* without a leading *prefix*: ``strip_prefix(name, 'models/')``."""
        if value is not None and value.startswith(prefix):
            return value[len(prefix):]
        return value

    @jmespath.functions.signature()
    def _func_frame(self) -> Any:
        """The envelope of the stream frame being read: ``frame().event``."""
        return _envelope(current_frame.get())


def _envelope(frame: Any) -> Any:
    if frame is None:
        return None
    meta = dict(frame.meta)
    return {"event": frame.event, "id": meta.get("id"), "data": frame.data, "meta": meta,
            "offset": frame.offset}


_OPTIONS = jmespath.Options(custom_functions=_Functions())
_INTERPRETER = jmespath.visitor.TreeInterpreter(_OPTIONS)
Getter = Callable[[Any], Any]


def _is_false(value: Any) -> bool:
    # jmespath's truthiness, not Python's: 0 is true, empty containers are false.
    return value is None or value is False or value == "" or value == [] or value == {}


def _field(name: str) -> Getter:
    return lambda data: data.get(name) if isinstance(data, dict) else None


def _index(child: Getter, index: int) -> Getter:
    def get(data: Any) -> Any:
        value = child(data)
        if not isinstance(value, list) or not -len(value) <= index < len(value):
            return None
        return value[index]
    return get


def _chain(steps: list[Getter]) -> Getter:
    def get(data: Any) -> Any:
        for step in steps:
            data = step(data)
        return data
    return get


def _not(child: Getter) -> Getter:
    def get(data: Any) -> Any:
        value = child(data)
        if _number(value) and value == 0:
            return False
        return not value
    return get


def _and(left: Getter, right: Getter) -> Getter:
    def get(data: Any) -> Any:
        value = left(data)
        return value if _is_false(value) else right(data)
    return get


def _or(left: Getter, right: Getter) -> Getter:
    def get(data: Any) -> Any:
        value = left(data)
        return right(data) if _is_false(value) else value
    return get


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(x: Any, y: Any) -> bool:
    """jmespath equality: 0 and 1 never equal false and true."""
    if (_number(x) and x in (0, 1) and isinstance(y, bool)) or (
            _number(y) and y in (0, 1) and isinstance(x, bool)):
        return False
    return bool(x == y)


def _equals(left: Getter, right: Getter, negate: bool) -> Getter:
    return lambda data: _same(left(data), right(data)) != negate


def _steps(node: Any) -> tuple[str | int, ...] | None:
    """A chain of plain field and index steps as its keys (``a.b[0].c``), else None."""
    kind = node["type"]
    if kind == "field":
        return (str(node["value"]),)
    if kind == "subexpression":
        out: tuple[str | int, ...] = ()
        for child in node["children"]:
            part = _steps(child)
            if part is None:
                return None
            out += part
        return out
    if kind == "index_expression" and node["children"][1]["type"] == "index":
        head = _steps(node["children"][0])
        return (*head, int(node["children"][1]["value"])) if head is not None else None
    return None


def walker(steps: tuple[str | int, ...]) -> Getter:
    """The getter of a plain chain of field and index *steps*, as one call: most
    manifest paths are chains, read on every frame (see also :attr:`Path.tests`).

    Same result as the composed field and index closures: a step that does not apply
    (a field of a non-object, an index outside a list) gives null, and null stays null.
    """
    def get(data: Any) -> Any:
        for step in steps:
            if step.__class__ is str:
                if not isinstance(data, dict):
                    return None
                data = data.get(step)
            elif isinstance(data, list) and -len(data) <= step < len(data):  # type: ignore[operator]
                data = data[step]  # type: ignore[index]
            else:
                return None
        return data
    return get


def _compile(node: Any) -> Getter:
    """Closures for common node types; the interpreter for everything else."""
    kind, children = node["type"], node.get("children", [])
    steps = _steps(node) if kind in ("subexpression", "index_expression") else None
    if steps is not None:
        return walker(steps)
    if kind == "field":
        return _field(node["value"])
    if kind == "literal":
        value = node["value"]
        return lambda data: value
    if kind == "current":
        return lambda data: data
    if kind == "subexpression":
        return _chain([_compile(c) for c in children])
    if kind == "index_expression" and children[1]["type"] == "index":
        return _index(_compile(children[0]), children[1]["value"])
    if kind == "not_expression":
        return _not(_compile(children[0]))
    if kind == "and_expression":
        return _and(_compile(children[0]), _compile(children[1]))
    if kind == "or_expression":
        return _or(_compile(children[0]), _compile(children[1]))
    if kind == "function_expression" and node["value"] == "frame" and not children:
        return lambda data: _envelope(current_frame.get())
    if kind == "comparator" and node["value"] in ("eq", "ne"):
        return _equals(_compile(children[0]), _compile(children[1]), node["value"] == "ne")
    if kind == "identity":
        return lambda data: data
    if kind == "filter_projection":
        return _filter(*(_compile(c) for c in children))
    if kind == "function_expression" and node["value"] == "join" and len(children) == 2:
        return _join(_compile(children[0]), _compile(children[1]), node)
    return lambda data: _INTERPRETER.visit(node, data)


def _filter(base: Getter, each: Getter, keep: Getter) -> Getter:
    """``base[?keep].each``, as jmespath's interpreter evaluates it."""
    def get(data: Any) -> Any:
        items = base(data)
        if not isinstance(items, list):
            return None
        out = []
        for item in items:
            if not _is_false(keep(item)):
                value = each(item)
                if value is not None:
                    out.append(value)
        return out
    return get


def _join(glue: Getter, items: Getter, node: Any) -> Getter:
    """``join(glue, items)`` for a string glue and a list of strings; anything else (a
    type error included) is the interpreter's."""
    def get(data: Any) -> Any:
        sep, values = glue(data), items(data)
        if type(sep) is str and type(values) is list and all(type(v) is str for v in values):
            return sep.join(values)
        return _INTERPRETER.visit(node, data)
    return get


Steps = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled JMESPath expression."""

    source: str
    getter: Getter
    # The key a path of plain field and index steps starts with: when the data has no
    # such key the result is null, so the steps need not run (most frames lack most keys).
    root: str | None = None
    # The getter is a plain chain's (:func:`walker`): it never raises, null in, null out.
    chain: bool = False
    # The conjuncts of the form ``chain == 'string'`` at the top of an ``&&`` expression:
    # the expression is false wherever one of these chains has another value.
    tests: tuple[tuple[Steps, str], ...] = field(default=(), compare=False, repr=False)

    # :meth:`search` for data that may be null (null in, null out), as one call: a chain's
    # getter itself, else a guarded search. The stream mapper's read.
    read: Getter = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "read", self.getter if self.chain else self._guarded)

    def search(self, data: Any) -> Any:
        root = self.root
        if root is not None and not (isinstance(data, dict) and root in data):
            return None
        try:
            return self.getter(data)
        except jmespath.exceptions.JMESPathError as exc:
            raise PathError(f"{self.source!r}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            raise PathError(f"{self.source!r}: {exc}") from None

    def _guarded(self, data: Any) -> Any:
        return None if data is None else self.search(data)


def compile_path(source: str) -> Path:
    """Parse *source* once; raise :class:`PathError` with the reason."""
    if not isinstance(source, str) or not source.strip():
        raise PathError("a JMESPath expression must be a non-empty string")
    try:
        parsed = jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise PathError(f"invalid JMESPath {source!r}: {exc}") from None
    node = parsed.parsed
    steps = _steps(node)
    getter = walker(steps) if steps is not None else _compile(node)
    return Path(source, getter, _root(node), steps is not None, _tests(node))


def _tests(node: Any) -> tuple[tuple[Steps, str], ...]:
    """The ``chain == 'string'`` conjuncts of *node* (see :attr:`Path.tests`)."""
    kind = node["type"]
    if kind == "and_expression":
        left, right = node["children"]
        return _tests(left) + _tests(right)
    if kind == "comparator" and node["value"] == "eq":
        a, b = node["children"]
        for chain, other in ((a, b), (b, a)):
            steps = _steps(chain)
            if steps is not None and other["type"] == "literal" and type(other["value"]) is str:
                return ((steps, other["value"]),)
    return ()


def _root(node: Any) -> str | None:
    """The first key of a chain of field and index steps (see :attr:`Path.root`)."""
    kind = node["type"]
    if kind == "field":
        return str(node["value"])
    if kind in ("subexpression", "index_expression"):
        return _root(node["children"][0])
    return None
