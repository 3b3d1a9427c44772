"""Template limits (issue 15): every render is bounded in work, time and memory.

A hostile expression ends within about a second with a ManifestError whose
message names the limit it hit (``size limit``, ``work limit``, ``time
limit``) or the construct the sandbox refuses; the memory it reaches stays
bounded; and a large real request (1,000 messages, a 1 MiB text, 128 tools)
still renders through every shipped manifest, within a quarter of the budget.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from typing import Any

import pytest

from engine.errors import ManifestError
from engine.manifest import load_manifest, templates
from engine.manifest.templates import TemplateError, compile_tree, render_checked
from engine.protocol.render import prepare
from engine.types import ChatRequest, Message, Tool, ToolCall

RANGES = "[" + ", ".join(["range(99999)"] * 40) + "]"
BIG = "('x' * 99999)"
# A 4 MiB text the caller sent, and a dict of 50,000 entries.
CONTEXT = {"s": "q" * (4 << 20), "d": {f"k{i}": i for i in range(50_000)}, "xs": ["a"]}
SIZE = r"size limit: .* more than 100000 items or characters"
WORK = r"over the work limit \(1000000 steps\)"
# Where the step count charges little per unit of real time, the clock may stop
# the render first on a slow machine.
WORK_OR_TIME = r"over the (work limit \(1000000 steps\)|time limit \(1 s\))"


def _each(source: str, body: Any) -> dict[str, Any]:
    return {"$each": source, "as": "i", "do": body}


# name -> (template tree, what the error must say)
HOSTILE: dict[str, tuple[Any, str]] = {
    # The issue's own examples, and the allocation paths they stand for.
    "ranges_times_2000": ("{{ ([range(99999)] * 2000) | map('list') | list | length }}", SIZE),
    "range_1e9": ("{{ range(10**9) | list }}", r"size limit: range\(\) would make"),
    "dict_fromkeys": ("{{ dict.fromkeys(range(99999)) }}",
                      r"calling dict\.fromkeys\(\) is not allowed"),
    "instance_fromkeys": ("{{ {}.fromkeys(range(99999)) }}",
                          r"calling dict\.fromkeys\(\) is not allowed"),
    "str_join_method": ("{{ ''.join(xs) }}", r"calling str\.join\(\) is not allowed"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", r"calling str\.ljust\(\) is not allowed"),
    "percent_format": ("{{ '%s' % ('a' * 99999) }}", "'%' string formatting is not allowed"),
    "format_width": ("{{ '{:>999999999}'.format(1) }}", r"str\.format\(\) is not allowed"),
    "str_times": ("{{ 'a' * 10**9 }}", SIZE),
    "dicts_aliased": ("{{ [{'a': 'x' * 99999}] * 50000 }}", SIZE),
    "replace_growth": (f"{{{{ {BIG} | replace('x', {BIG}) }}}}", SIZE),
    "join_separators": ("{{ ('ab' * 50000) | join(', ') }}", SIZE),
    "sum_of_lists": ("{{ ([range(10) | list] * 9000) | sum(start=[]) }}",
                     r"sum\(\) adds numbers only"),
    "lipsum": ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
    "namespace": ("{{ namespace(a=1) }}", "'namespace' is undefined"),
    "cycler": ("{{ cycler(1, 2) }}", "'cycler' is undefined"),
    "joiner": ("{{ joiner() }}", "'joiner' is undefined"),
    # Work that no single operation sizes: the step budget.
    "literal_ranges_to_lists": (f"{{{{ {RANGES} | map('list') | list | length }}}}", WORK),
    "literal_ranges_max": (f"{{{{ {RANGES} | map('max') | list }}}}", WORK),
    "literal_ranges_string": (f"{{{{ {RANGES} | map('list') | map('string') | join }}}}", WORK),
    "tojson_of_lists": ("{{ [" + ", ".join(["[0] * 99999"] * 40) + "] | tojson }}", WORK),
    "select_in_big_list": ("{{ (range(99999) | list) | select('in', range(99999) | list) "
                           "| list }}", WORK),
    "plus_chain": ("{{ " + " + ".join([BIG] * 40) + " }}", WORK),
    "tilde_of_user_text": ("{{ " + " ~ ".join(["s"] * 60) + " }}", WORK),
    "text_repeating_user_text": ("{{ s }}" * 60, WORK),
    "slices_of_user_text": ("{{ [" + ", ".join(["s[1:]"] * 40) + "] }}", WORK),
    "in_user_text": (_each("{{ range(99999) | list }}",
                           "{{ " + " or ".join(["'zz' in s"] * 30) + " }}"), WORK),
    "scanning_test_of_user_text": ("{{ [" + ", ".join(["s"] * 60) + "] | select('lower') "
                                   "| list }}", WORK),
    "split_user_text": ("{{ (s ~ ' ').split(' ') | length }}", WORK),
    "user_text_to_chars": ("{{ s | list | length }}", WORK),
    "lower_user_text_each": (_each("{{ range(99999) | list }}", "{{ s.lower() | length }}"),
                             WORK),
    "each_fresh_big": (_each("{{ range(99999) | list }}", f"{{{{ {BIG} }}}}"), WORK),
    "each_repeats_user_text": (_each("{{ range(99999) | list }}", "{{ s }}"), WORK),
    "each_nested": (_each("{{ range(99999) | list }}",
                          _each("{{ range(99999) | list }}", "{{ i }}")), WORK_OR_TIME),
    "each_slices": (_each("{{ range(99999) | list }}", "{{ s[:1000] }}"), WORK_OR_TIME),
    "each_wide_body": (_each("{{ range(99999) | list }}",
                             {f"k{n}": "{{ i }}" for n in range(100)}), WORK_OR_TIME),
}
# regex_replace: bounded in time, text, replacement; a bad pattern is an error, not a crash.
REGEX_REFUSED: dict[str, tuple[str, str]] = {
    "regex_replace_backtracking": ("{{ ('a' * 4000 ~ '!') | regex_replace('(a|aa)+$', '') }}",
                                   "regex_replace: '\\(a\\|aa\\)\\+\\$' ran out of time"),
    "regex_replace_long_text": ("{{ ('a' * 5000) | regex_replace('a', 'b') }}",
                                "size limit: regex_replace would scan"),
    "regex_replace_group_reference": ("{{ 'ab' | regex_replace('(a)', '\\\\1' * 3) }}",
                                      "regex_replace takes a plain replacement"),
    "regex_replace_bad_pattern": ("{{ 'ab' | regex_replace('(', '') }}", "regex_replace: "),
}


@pytest.mark.parametrize("name", sorted(REGEX_REFUSED))
def test_regex_replace_is_bounded(name: str) -> None:
    tree, why = REGEX_REFUSED[name]
    error, seconds = _refusal(tree, {})
    assert re.search(why, error.message), error.message
    assert seconds < 2


# Refused when the template is compiled (a manifest that holds one does not load).
REFUSED_ON_COMPILE: dict[str, tuple[str, str]] = {
    "nested_for": ("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}"
                   "{% endfor %}", r"only \{\{ expressions \}\} are allowed"),
    "macro_recursion": ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
                        r"only \{\{ expressions \}\} are allowed"),
    "batch": ("{{ range(99999) | batch(1) | list }}", "No filter named 'batch'"),
    "wordwrap": ("{{ ('a ' * 49999) | wordwrap(1) }}", "No filter named 'wordwrap'"),
    "center": ("{{ 'x' | center(10**9) }}", "No filter named 'center'"),
    "indent": ("{{ 'x' | indent(10**9, true) }}", "No filter named 'indent'"),
}


def _refusal(tree: Any, ctx: dict[str, Any]) -> tuple[ManifestError, float]:
    node = compile_tree(tree)
    started = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        render_checked(node, ctx, "chat.body", "evil")
    return caught.value, time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_fails_fast_naming_the_limit(name: str) -> None:
    tree, expected = HOSTILE[name]
    error, elapsed = _refusal(tree, CONTEXT)
    assert error.kind == "invalid_request"
    assert error.key is not None and error.key[:2] == ("chat", "body")
    assert re.search(expected, str(error)), str(error)[-300:]
    assert elapsed < 2.0, f"{name} took {elapsed:.2f}s"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_holds_bounded_memory(name: str) -> None:
    tree, _ = HOSTILE[name]
    node = compile_tree(tree)
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError, match=r"limit|not allowed|undefined|numbers only"):
            render_checked(node, CONTEXT, "chat.body", "evil")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, f"{name} peaked at {peak >> 20} MiB"


@pytest.mark.parametrize("name", sorted(REFUSED_ON_COMPILE))
def test_statements_and_unbounded_filters_do_not_compile(name: str) -> None:
    source, expected = REFUSED_ON_COMPILE[name]
    with pytest.raises(TemplateError, match=expected):
        compile_tree(source)


def test_an_expression_rendered_outside_render_checked_is_bounded_too() -> None:
    node = compile_tree(f"{{{{ {RANGES} | map('list') | list | length }}}}")
    with pytest.raises(TemplateError, match=WORK):
        node.render({})


def test_the_limit_error_names_the_template_and_its_place() -> None:
    node = compile_tree({"messages": [{"text": "{{ s | list | length }}"}]})
    with pytest.raises(ManifestError) as caught:
        render_checked(node, CONTEXT, "chat.body", "evil")
    assert caught.value.key == ("chat", "body", "messages", 0, "text")
    assert str(caught.value) == (
        "evil: invalid_request: chat.body.messages.0.text: over the work limit "
        "(1000000 steps) in '{{ s | list | length }}'")


# ---------------------------------------------------------------- what stays allowed

def _render(tree: Any, **ctx: Any) -> Any:
    return render_checked(compile_tree(tree), ctx, "chat.body", "test")


def test_ranges_are_sized_by_their_length() -> None:
    assert _render("{{ ([range(3)] * 2) | map('list') | list }}") == [[0, 1, 2], [0, 1, 2]]
    assert _render("{{ range(100000) | list | length }}") == 100_000
    with pytest.raises(ManifestError, match=SIZE):
        _render("{{ [range(50000)] * 3 }}")


@pytest.mark.parametrize("source, expected", [
    ("{{ 1 < 2 < 3 }}", True),
    ("{{ 3 < 2 < 3 }}", False),
    ("{{ 'b' in 'abc' }}", True),
    ("{{ 'b' not in 'abc' }}", False),
    ("{{ [1, 2] == [1, 2] and 1 != 2 }}", True),
    ("{{ 'abcdef'[1:3] ~ 'abcdef'[::-2] }}", "bcfdb"),
    ("{{ [1, 2, 3][1:] }}", [2, 3]),
    ("x{{ 'abc'[:1] }}y{{ 7 }}", "xay7"),
    ("{{ [1, 2, 3] | sum }}", 6),
    ("{{ dict(a=1) }}", {"a": 1}),
])
def test_rerouted_operators_keep_their_meaning(source: str, expected: Any) -> None:
    assert _render(source) == expected


def test_large_user_text_goes_through_methods_filters_and_concatenation() -> None:
    text = "word " * (1 << 18)  # 1.25 MiB
    tree = {"strip": "{{ m.strip() | length }}", "upper": "{{ m | upper | length }}",
            "joined": "{{ [m, m] | join('\n') | length }}",
            "concat": "{{ (m ~ '\n\n' ~ m) | length }}", "plus": "{{ (m + m) | length }}",
            "replace": "{{ m.replace('word', 'WORD') | length }}",
            "text": "<{{ m[:4] }}>", "same": "{{ m }}"}
    body = _render(tree, m=text)
    assert body == {"strip": len(text) - 1, "upper": len(text), "joined": 2 * len(text) + 1,
                    "concat": 2 * len(text) + 2, "plus": 2 * len(text),
                    "replace": len(text), "text": "<word>", "same": text}


# ---------------------------------------------------------------- a large real request

def _large_request() -> ChatRequest:
    messages = [Message.system("You are a careful assistant. " * 40)]
    for i in range(332):
        call = ToolCall(f"call_{i}", f"tool_{i % 128}", {"city": f"City {i}", "n": i})
        messages += [Message.user(f"question {i} " * 30),
                     Message.assistant(f"let me check {i}", tool_calls=[call]),
                     Message.tool(f"call_{i}", {"temperature": i, "unit": "C"})]
    messages += [Message.user("x" * (1 << 20)), Message.assistant("Read it."),
                 Message.user("Summarize it.")]
    tools = tuple(Tool.from_dict({
        "name": f"tool_{i}", "description": f"does thing {i} " * 10,
        "parameters": {"type": "object", "required": ["city"], "properties": {
            f"p{j}": {"type": "string", "description": f"parameter {j}"} for j in range(8)}},
    }) for i in range(128))
    assert len(messages) == 1000
    return ChatRequest(tuple(messages), {"temperature": 0.2, "max_tokens": 512}, tools, "auto")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "deepseek", "ollama"])
def test_a_large_real_request_renders_within_a_quarter_of_the_budget(
        provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_WORK", templates.MAX_WORK // 4)
    manifest, request = load_manifest(provider), _large_request()
    started = time.perf_counter()
    prepared = prepare(manifest, request, "some-model", api_key="sk-test")
    elapsed = time.perf_counter() - started
    body = json.loads(prepared.body)
    assert "x" * (1 << 20) in prepared.body.decode("utf-8")
    assert json.dumps(body).count("question 331 ") == 30
    assert len(prepared.body) > 1 << 20
    assert elapsed < templates.MAX_SECONDS / 2, f"{provider} took {elapsed:.2f}s"
