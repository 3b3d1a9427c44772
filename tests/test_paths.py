"""Compiled JMESPath: the closure compiler agrees with jmespath itself."""

from __future__ import annotations

from pathlib import Path as FsPath

import jmespath
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.manifest.paths import PathError, compile_path

ROOT = FsPath(__file__).resolve().parent.parent
PATH_KEYS = {"content", "thinking", "tool_calls", "finish_reason", "when", "key", "id",
             "name", "arguments", "each", "message", "code", "type", "status", "error",
             "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
             "reasoning_tokens", "path"}


def manifest_expressions() -> list[str]:
    found: set[str] = set()

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
        elif isinstance(node, str) and key in PATH_KEYS and "{{" not in node and \
                not node.startswith("/"):
            found.add(node)

    for path in sorted((ROOT / "protocols").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        walk(data.get("chat", {}).get("response"))
        walk(data.get("chat", {}).get("stream", {}).get("events"))
        walk(data.get("errors"))
    return sorted(found)


# The engine's own functions (frame(), lower_eq()) are not jmespath's: compared elsewhere.
EXPRESSIONS = [*(e for e in manifest_expressions() if "frame(" not in e and "lower_eq(" not in e),
               "a.b[0]", "a[-1]", "!a", "a && b", "a || b",
               "a == `1`", "a != 'x'", "a == `true`", "`0` == `false`", "!`0`", "@", "a[*].b",
               "a | [0]", "length(a)", "a[?b].c", "a[?type=='x']", "a[?!b]", "join('', a)",
               "join(b, a[?a].b)", "join('-', a[?type=='text'].text)"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "x", "stop"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "b", "error", "type", "choices", "delta", "content", "index",
                         "candidates", "usage", "message", "done", "text", "thought", "parts",
                         "functionCall", "name"]), inner, max_size=4),
    max_leaves=12,
)


def reference(expr, data):
    try:
        return ("ok", jmespath.search(expr, data))
    except Exception as exc:  # comparing failure modes
        return ("error", type(exc).__name__)


def ours(expr, data):
    try:
        return ("ok", compile_path(expr).search(data))
    except PathError:
        return ("error", None)


def test_manifests_provide_expressions():
    assert len(manifest_expressions()) > 30


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_compiled_paths_agree_with_jmespath(data):
    for expr in EXPRESSIONS:
        expected, got = reference(expr, data), ours(expr, data)
        if expected[0] == "error":
            assert got[0] == "error", (expr, data, got)
        else:
            assert got == expected, (expr, data)
            assert type(got[1]) is type(expected[1]), (expr, data)


def test_bad_expressions():
    for bad in ("", "   ", "a[?", "foo(", "[0"):
        with pytest.raises(PathError):
            compile_path(bad)


def test_a_plain_chain_knows_its_root_key():
    """A chain of field and index steps is null when its first key is missing, so search
    skips the steps (the differential test above shows the results do not change)."""
    assert compile_path("usage.prompt_tokens").root == "usage"
    assert compile_path("choices[0].delta.content").root == "choices"
    for other in ("a || b", "choices[].x", "@.x", "`1`", "frame().event", "length(a)"):
        assert compile_path(other).root is None, other
    assert compile_path("usage.prompt_tokens").search({"choices": []}) is None
    assert compile_path("usage.prompt_tokens").search([1]) is None
    assert compile_path("usage.prompt_tokens").search({"usage": {"prompt_tokens": 3}}) == 3


@settings(max_examples=200, deadline=None)
@given(data=json_values | st.none())
def test_read_is_search_with_null_in_null_out(data):
    """``Path.read``, the stream mapper's one-call read, gives what search gives."""
    for expr in EXPRESSIONS:
        try:
            path = compile_path(expr)
        except PathError:
            continue  # a manifest string that is not a path (the test above covers it)
        if data is None:
            assert path.read(None) is None, expr
            continue
        try:
            expected = ("ok", path.search(data))
        except PathError:
            expected = ("error", None)
        try:
            got = ("ok", path.read(data))
        except PathError:
            got = ("error", None)
        assert got == expected, (expr, data)


def test_an_and_of_string_equalities_lists_its_tests():
    path = compile_path("type == 'content_block_delta' && delta.type == 'text_delta'")
    assert path.tests == ((("type",), "content_block_delta"), (("delta", "type"), "text_delta"))
    assert compile_path("'x' == choices[0].kind").tests == ((("choices", 0, "kind"), "x"),)
    # Only conjuncts that must hold count: not under || or !, not against a non-string.
    for other in ("type == 'a' || type == 'b'", "!(type == 'a')", "type == `1`",
                  "type != 'a'", "frame().event == 'a'", "a[*].type == 'x'"):
        assert compile_path(other).tests == (), other


@settings(max_examples=300, deadline=None)
@given(data=json_values)
def test_a_failed_test_means_the_expression_is_false(data):
    """The mapper skips a rule whose test chain holds another value: sound only if the
    whole expression is then false (jmespath's own evaluation is the judge)."""
    from engine.manifest.paths import walker

    for expr in ("type == 'a' && b", "type == 'x' && delta.type == 'stop'",
                 "choices[0].delta.content == 'x' && !error", "'a' == type"):
        for steps, literal in compile_path(expr).tests:
            if walker(steps)(data) != literal:
                value = jmespath.search(expr, data)
                assert value is False or value is None or value in ("", [], {}), (expr, data)
