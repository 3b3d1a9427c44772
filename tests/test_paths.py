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
