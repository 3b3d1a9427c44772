"""Request templates: structure rules, directives, the sandbox, JSON safety."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.manifest import load_manifest
from engine.manifest.templates import TemplateError, compile_tree
from engine.protocol.render import prepare
from engine.types import ChatRequest, Message


def render(tree, **ctx):
    return compile_tree(tree).render(ctx)


def test_whole_expression_keeps_native_types():
    assert render({"n": "{{ x }}", "l": "{{ y }}"}, x=0.5, y=[1, 2]) == {"n": 0.5, "l": [1, 2]}


def test_mixed_text_renders_a_string():
    assert render("/models/{{ m }}:go", m="a-b") == "/models/a-b:go"


def test_none_values_drop_keys_and_list_items():
    tree = {"a": "{{ none }}", "b": ["{{ none }}", 1], "c": 0, "d": False}
    assert render(tree) == {"b": [1], "c": 0, "d": False}


def test_each_if_switch_concat():
    tree = {
        "items": {"$each": "{{ xs }}", "as": "x", "do": {"$switch": "{{ x.k }}",
                                                        "cases": {"a": "A"}, "default": "D"}},
        "maybe": {"$if": "{{ flag }}", "then": "yes"},
        "joined": {"$concat": [["p"], "{{ none }}", "q", {"$each": "{{ xs }}", "as": "x",
                                                         "do": "{{ x.k }}"}]},
    }
    out = render(tree, xs=[{"k": "a"}, {"k": "b"}], flag=False)
    assert out == {"items": ["A", "D"], "joined": ["p", "q", "a", "b"]}


def test_each_flatten_splices_lists():
    tree = {"$each": "{{ xs }}", "as": "x", "do": ["{{ x }}", "{{ x * 10 }}"], "flatten": True}
    assert render(tree, xs=[1, 2]) == [1, 10, 2, 20]


def test_each_over_none_drops_the_key():
    tree = {"tools": {"$each": "{{ t }}", "as": "x", "do": "{{ x }}"}, "keep": 1}
    assert render(tree, t=None) == {"keep": 1}


def test_a_mapping_of_unset_entries_is_unset_but_literal_empty_stays():
    tree = {"config": {"a": "{{ none }}", "b": "{{ none }}"}, "literal": {}, "n": {"x": 0}}
    assert render(tree) == {"literal": {}, "n": {"x": 0}}


def test_engine_filters():
    assert render("{{ v | json }}", v={"a": "é", "b": 1}) == '{"a":"é","b":1}'
    assert render("{{ s | as_object('result') }}", s='{"t": 1}') == {"t": 1}
    assert render("{{ s | as_object('result') }}", s="plain") == {"result": "plain"}
    assert render("{{ s | path_segment }}", s="a/b:c d") == "a%2Fb%3Ac%20d"
    msgs = [{"role": "user"}, {"role": "tool"}, {"role": "tool"}, {"role": "assistant"}]
    turns = render("{{ m | group_turns({'tool': 'user'}) }}", m=msgs)
    assert [(t["role"], len(t["messages"])) for t in turns] == [("user", 3), ("assistant", 1)]


@pytest.mark.parametrize("tree, error", [
    ({"$each": "{{ x }}", "do": 1}, "needs 'as'"),
    ({"$if": "{{ x }}"}, "needs 'then'"),
    ({"$loop": 1}, "unknown directive"),
    ({"$if": "{{ x }}", "then": 1, "extra": 2}, "does not take"),
    ("{% for x in y %}{{ x }}{% endfor %}", "only {{ expressions }}"),
    ("{{ x ", "syntax error"),
])
def test_bad_templates_fail_to_compile(tree, error):
    with pytest.raises(TemplateError, match=error):
        compile_tree(tree)


def test_strict_undefined():
    node = compile_tree({"a": "{{ params.tempreature }}"})
    with pytest.raises(TemplateError, match="undefined"):
        node.render({"params": {"temperature": 1}})


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ x.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ 'a' * 100000000 }}",
    "{{ 10 ** 100000 }}",
    "{{ range(10**8) | list }}",
    "{{ lipsum() }}",
    "{{ dict.fromkeys(range(10)) }}",
    "{{ ([range(99999)] * 2000) | map('list') | list | length }}",
])
def test_sandbox_refuses_escape_and_blowup(source):
    with pytest.raises(TemplateError):
        compile_tree(source).render({"x": lambda: None})


def test_templates_cannot_read_the_environment(monkeypatch):
    monkeypatch.setenv("SECRET_FOR_TEST", "hunter22")
    for source in ("{{ environ }}", "{{ os.environ }}", "{{ env.SECRET_FOR_TEST }}"):
        with pytest.raises(TemplateError):
            compile_tree(source).render({})
    assert "hunter22" not in json.dumps(render({"m": "{{ model }}"}, model="x"))
    assert os.environ["SECRET_FOR_TEST"] == "hunter22"


text = st.text(st.characters(codec="utf-8"), max_size=200)


SENTINEL_CONTENT = "\u0000user-text-sentinel\u0000"
SENTINEL_SYSTEM = "\u0000system-text-sentinel\u0000"


def _places(value, target, path=()):
    """Every path in *value* whose value is exactly *target*."""
    if value == target:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, target, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, target, (*path, index))


def _at(value, path):
    for part in path:
        value = value[part]
    return value


def _body(provider, system, content):
    request = ChatRequest((Message.system(system), Message.user(content)))
    prepared = prepare(load_manifest(provider), request, "m", api_key="sk-test-key")
    body = json.loads(prepared.body.decode("utf-8"))
    assert body == prepared.json
    return body


@settings(max_examples=150, deadline=None)
@given(content=text, system=text)
def test_any_unicode_text_round_trips_through_every_manifest(content, system):
    """The user and system texts land, unchanged, exactly where each manifest puts them."""
    for provider in ("openai", "anthropic", "gemini", "deepseek", "ollama"):
        probe = _body(provider, SENTINEL_SYSTEM, SENTINEL_CONTENT)
        content_at = list(_places(probe, SENTINEL_CONTENT))
        system_at = list(_places(probe, SENTINEL_SYSTEM))
        assert content_at and system_at, provider
        body = _body(provider, system, content)
        if content:
            assert [_at(body, p) for p in content_at] == [content] * len(content_at), provider
        if system:
            assert [_at(body, p) for p in system_at] == [system] * len(system_at), provider


_KEYS = st.sampled_from(["a", "b", "items", "keys", "get", "_x", "content", "__class__"])
_DATA = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.text(max_size=3)),
                     lambda inner: st.dictionaries(_KEYS, inner, max_size=4), max_leaves=12)
_ATOM = st.one_of(st.lists(_KEYS, min_size=1, max_size=3).map(".".join),
                  st.sampled_from(["none", "true", "false", "'x'", "0", "1"]))


def _expressions(depth: int = 2) -> st.SearchStrategy[str]:
    if depth == 0:
        return _ATOM
    sub = _expressions(depth - 1)
    return st.one_of(
        _ATOM,
        sub.map(lambda e: f"not ({e})"),
        st.tuples(sub, sub).map(lambda p: f"({p[0]}) and ({p[1]})"),
        st.tuples(sub, sub).map(lambda p: f"({p[0]}) or ({p[1]})"),
        st.tuples(sub, sub, sub).map(lambda p: f"({p[0]}) if ({p[1]}) else ({p[2]})"),
        st.tuples(sub, st.sampled_from(["none", "not none", "true", "false"])).map(
            lambda p: f"({p[0]}) is {p[1]}"),
        st.tuples(sub, sub, st.sampled_from(["==", "!="])).map(
            lambda p: f"({p[0]}) {p[2]} ({p[1]})"),
        sub.map(lambda e: f"({e}) | length"),  # not direct: Jinja evaluates it
    )


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(_KEYS, _DATA, max_size=4), expr=_expressions())
def test_the_direct_evaluator_gives_what_jinja_gives(data: dict, expr: str) -> None:
    """An expression renders the same through the direct evaluator as through Jinja alone:
    names, dict keys (never a dict method's name or a dunder), misses, and/or/not,
    conditionals, tests and comparisons."""
    from engine.manifest.templates import _Expr, compile_string

    try:
        node = compile_string("{{ " + expr + " }}")
    except TemplateError:
        return
    assert isinstance(node, _Expr)
    slow = _Expr(node.source, node.fn)  # the same expression, Jinja only

    def outcome(n: Any) -> Any:
        try:
            return ("ok", n.render(data))
        except TemplateError as exc:
            return ("error", str(exc))

    assert outcome(node) == outcome(slow)


# ---------------------------------------------------------------- deferred compilation

def test_deferred_leaves_compile_when_first_rendered():
    """Under ``deferred()`` (the compiled-manifest cache: content checked before) a Jinja
    leaf is compiled at its first render, and renders what the eager tree renders."""
    from engine.manifest.templates import _Deferred, deferred

    tree = {"a": "{{ x.y }}", "b": "v{{ n + 1 }}", "c": "plain",
            "d": {"$each": "{{ xs }}", "as": "i", "do": "{{ i * 2 }}"}}
    with deferred():
        lazy = compile_tree(tree)
        broken = compile_tree({"k": "{{ x. }}"})  # never checked: only for checked content
    leaves = dict(lazy.items)
    assert isinstance(leaves["a"], _Deferred) and leaves["a"]._node is None
    assert not isinstance(leaves["c"], _Deferred)  # plain strings are literals at once
    ctx = {"x": {"y": 3}, "n": 1, "xs": [1, 2]}
    assert lazy.render(ctx) == compile_tree(tree).render(ctx) == {
        "a": 3, "b": "v2", "c": "plain", "d": [2, 4]}
    assert leaves["a"]._node is not None
    with pytest.raises(TemplateError, match="syntax error"):
        broken.render(ctx)
    assert not isinstance(compile_tree("{{ x }}"), _Deferred)  # only inside the block


def test_a_manifest_from_the_cache_sends_what_the_checked_one_sends(tmp_path, monkeypatch):
    from engine.manifest import templates
    from engine.manifest.load import clear_cache
    from engine.parts import Part
    from engine.types import Tool

    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path))
    entered = []
    real = templates.deferred

    def counting():
        entered.append(1)
        return real()
    monkeypatch.setattr(templates, "deferred", counting)
    tool = Tool("weather", "The weather.", {"type": "object",
                                            "properties": {"city": {"type": "string"}}})
    requests = [
        ChatRequest((Message.system("Be brief."), Message.user("Hi")), {"temperature": 0.2}),
        ChatRequest((Message.user(["Look.", Part.image(data=b"\x89PNG\r\n\x1a\n0000",
                                                        media_type="image/png")]),),
                    {"max_tokens": 64}, (tool,), "auto"),
    ]
    for provider, model in [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"),
                            ("gemini", "gemini-2.5-flash"), ("ollama", "llama3.2"),
                            ("bedrock", "anthropic.claude-3-7-sonnet-20250219-v1:0")]:
        clear_cache()
        checked = load_manifest(provider)  # checked in full, then written to the cache
        clear_cache()
        before = len(entered)
        cached = load_manifest(provider)
        assert list(tmp_path.glob("*.json")) and cached is not checked
        assert len(entered) == before + 1  # compiled from the cache, its leaves deferred
        for request in requests:
            settings = {"region": "us-east-1"} if provider == "bedrock" else None
            sent = [prepare(m, request, model, api_key="AKIDEXAMPLE:secret", settings=settings)
                    for m in (checked, cached)]
            assert json.loads(sent[0].body) == json.loads(sent[1].body), provider
            assert sent[0].url == sent[1].url
            if provider != "bedrock":  # a signature carries the time of signing
                assert sent[0].headers == sent[1].headers


def test_directives_read_context_data_as_it_is_and_render_the_same():
    """$each, $if, $switch and $message read their value without converting it (it is
    not output); what they render is what rendering the value first would give."""
    tree = {"out": {"$each": "{{ xs }}", "as": "x",
                    "do": {"$switch": "{{ x.kind }}", "cases": {"a": {"$if": "{{ x.on }}",
                                                                       "then": "{{ x.v }}"}},
                           "default": "{{ x }}"}}}
    ctx = {"xs": [{"kind": "a", "on": True, "v": [1, 2]}, {"kind": "b", "v": 3},
                  {"kind": "a", "on": False, "v": 4}]}
    assert render(tree, **ctx) == {"out": [[1, 2], {"kind": "b", "v": 3}]}
    # Other data is converted as before (a tuple is a list).
    assert render({"$each": "{{ xs }}", "as": "x", "do": "{{ x }}"}, xs=(1, 2)) == [1, 2]
