"""Named rules: a child changes, adds, places or removes one item of its parent's rule
lists by name, and every problem still points at the file and line that writes it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.manifest.check import check_file
from engine.manifest.merge import patch_list
from engine.manifest.schema import NAMED_LISTS, SCHEMA
from engine.manifest.source import resolve

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent

PARENT = """\
manifest: 1
id: parent
base_url: https://example.test/v1
auth: {scheme: bearer, env: [EXAMPLE_KEY]}
chat:
  path: /chat
  body: {model: "{{ model }}", messages: "{{ messages }}"}
  response: {content: answer}
  stream:
    framing: sse
    end: [{name: done, data: "[DONE]"}]
    events:
      - name: error
        when: error
        error: {message: error.message}
      - name: chunk
        when: "!error"
        content: delta.text
        usage: {prompt_tokens: usage.in, completion_tokens: usage.out}
errors:
  rules:
    - {name: quota, code: insufficient_quota, kind: quota_exhausted}
    - {name: context, status: 400, message_matches: "too long", kind: context_length_exceeded}
    - {name: busy, code: busy, kind: overloaded}
"""

CHILD_HEAD = "manifest: 1\nid: child\nextends: parent\n"  # lines 1-3


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    return write(tmp_path, "parent", PARENT)


def child(parent: Path, body: str) -> Path:
    """A child of *parent*: three head lines, then *body* from line 4."""
    return write(parent.parent, "child", CHILD_HEAD + textwrap.dedent(body))


def problems(path: Path) -> list[str]:
    return check_file(path).problems


def merged(path: Path) -> dict[str, Any]:
    return resolve(path)[0]


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


# ---------------------------------------------------------------- merging


def test_a_patch_deep_merges_into_the_item_of_that_name(parent: Path) -> None:
    path = child(parent, """\
        chat:
          stream:
            events:
              chunk:
                thinking: delta.reasoning
                usage: {cached_tokens: usage.cached, completion_tokens: null}
        """)
    assert problems(path) == []
    assert merged(path)["chat"]["stream"]["events"] == [
        {"name": "error", "when": "error", "error": {"message": "error.message"}},
        {"name": "chunk", "when": "!error", "content": "delta.text",
         "usage": {"prompt_tokens": "usage.in", "cached_tokens": "usage.cached"},
         "thinking": "delta.reasoning"},
    ]
    events = check_file(path).manifest.chat.stream.events  # type: ignore[union-attr]
    assert events[1].thinking is not None and set(events[1].usage) == {"prompt_tokens",
                                                                       "cached_tokens"}


def test_new_names_are_added_at_the_end_or_where_placed(parent: Path) -> None:
    path = child(parent, """\
        errors:
          rules:
            last: {code: c, kind: server_error}
            first: {$before: quota, code: a, kind: not_found}
            mid: {$after: context, code: b, kind: timeout}
            also_mid: {$after: context, code: d, kind: timeout}
            moved: {$after: first, code: e, kind: timeout}
            busy: {$before: quota}
        """)
    assert problems(path) == []
    rules = merged(path)["errors"]["rules"]
    assert names(rules) == ["first", "moved", "busy", "quota", "context", "mid", "also_mid",
                            "last"]
    assert rules[0] == {"name": "first", "code": "a", "kind": "not_found"}  # no $before
    assert rules[2] == {"name": "busy", "code": "busy", "kind": "overloaded"}


def test_null_removes_an_item_and_a_plain_list_still_replaces(parent: Path) -> None:
    path = child(parent, "errors:\n  rules: {busy: null, quota: null}\n")
    assert problems(path) == []
    assert names(merged(path)["errors"]["rules"]) == ["context"]
    path = child(parent, "errors:\n  rules:\n    - {code: x, kind: timeout}\n")
    assert problems(path) == []
    assert merged(path)["errors"]["rules"] == [{"code": "x", "kind": "timeout"}]


def test_a_mapping_without_a_parent_list_is_the_list_in_mapping_order(tmp_path: Path) -> None:
    path = write(tmp_path, "solo", PARENT.replace("id: parent", "id: solo").split("errors:")[0]
                 + "errors:\n  rules:\n    b: {code: b, kind: timeout}\n"
                 "    a: {code: a, kind: not_found, $before: b}\n"
                 "    c: {code: c, kind: overloaded}\n")
    assert problems(path) == []
    assert merged(path)["errors"]["rules"] == [
        {"name": "a", "code": "a", "kind": "not_found"},
        {"name": "b", "code": "b", "kind": "timeout"},
        {"name": "c", "code": "c", "kind": "overloaded"}]


def test_a_grandchild_patches_what_its_parent_added(parent: Path) -> None:
    child(parent, "errors:\n  rules:\n    extra: {code: x, kind: timeout}\n")
    grandchild = write(parent.parent, "grand", "manifest: 1\nid: grand\nextends: child\n"
                       "errors:\n  rules: {extra: {kind: not_found}, quota: null}\n")
    assert problems(grandchild) == []
    assert merged(grandchild)["errors"]["rules"][1:] == [
        {"name": "busy", "code": "busy", "kind": "overloaded"},
        {"name": "extra", "code": "x", "kind": "not_found"}]


def test_patch_list_is_linear_in_a_long_chain_of_placements() -> None:
    count = 20_000
    patch = {f"n{i}": {"$after": f"n{i - 1}" if i else "a", "v": i} for i in range(count)}
    result = patch_list([{"name": "a"}, {"name": "b"}], patch)
    assert result.problems == []
    assert [item["name"] for item in result.items] == ["a", *patch, "b"]


# ---------------------------------------------------------------- mistakes, at their lines


def test_a_placement_or_removal_naming_no_item_is_a_problem(parent: Path) -> None:
    path = child(parent, """\
        errors:
          rules:
            new: {$before: nope, code: x, kind: timeout}
            gone: null
            both: {$before: quota, $after: busy, code: y, kind: timeout}
            loop1: {$after: loop2, code: z, kind: timeout}
            loop2: {$after: loop1, code: w, kind: timeout}
            named: {name: other, code: v, kind: timeout}
        """)
    assert problems(path) == [
        f"{path}:6: errors.rules.new.$before: no item is named 'nope'",
        f"{path}:7: errors.rules.gone: null removes an item, but none is named 'gone'",
        f"{path}:8: errors.rules.both: give one of $before and $after, not both",
        f"{path}:9: errors.rules.loop1.$after: placement cycle: the items it names are "
        "placed relative to it",
        f"{path}:10: errors.rules.loop2.$after: placement cycle: the items it names are "
        "placed relative to it",
        f"{path}:11: errors.rules.named.name: the name of this item is its key 'named'; "
        "leave 'name' out",
    ]


def test_duplicate_and_ill_formed_names_are_problems(tmp_path: Path) -> None:
    text = PARENT.replace("{name: busy,", "{name: quota,").replace("name: chunk",
                                                                   "name: Chunk!")
    path = write(tmp_path, "parent", text)
    assert problems(path) == [
        f"{path}:16: chat.stream.events[1].name: value does not match regex "
        "'^[a-z0-9_-]{1,64}$'",
        f"{path}:24: errors.rules.quota.name: duplicate name 'quota' (also item 0 of this "
        "list): names in a list are unique",
    ]


def test_unknown_keys_and_wrong_types_inside_a_patch_are_rejected(parent: Path) -> None:
    path = child(parent, """\
        chat:
          stream:
            events:
              chunk: {contnet: delta.x, end: "yes"}
              fresh: [1]
        errors:
          rules:
            quota: {kind: quota_exhaust}
        """)
    assert problems(path) == [
        f"{path}:7: chat.stream.events.chunk.contnet: unknown field; did you mean 'content'?",
        f"{path}:7: chat.stream.events.chunk.end: must be of boolean type",
        f"{path}:8: chat.stream.events.fresh: must be of dict type",
        f"{path}:11: errors.rules.quota.kind: unallowed value quota_exhaust; did you mean "
        "'quota_exhausted'?",
    ]


def test_a_problem_in_a_patched_item_is_at_the_childs_line(parent: Path) -> None:
    path = child(parent, """\
        chat:
          stream:
            events:
              chunk:
                thinking: "bad[?"
        errors:
          rules:
            new: {code: x}
        """)
    found = problems(path)
    assert [line.split(": invalid JMESPath")[0] for line in found] == [
        f"{path}:8: chat.stream.events.chunk.thinking",
        f"{path}:11: errors.rules.new: a rule needs an outcome (kind, retryable, retry)",
    ]


def test_a_problem_in_what_the_child_did_not_touch_is_at_the_parents_line(
        parent: Path) -> None:
    write(parent.parent, "parent", PARENT.replace("content: delta.text", 'content: "bad[?"')
          .replace('"too long"', '"(unclosed"'))
    path = child(parent, """\
        chat:
          stream:
            events:
              chunk: {thinking: delta.reasoning}
        errors:
          rules: {quota: {kind: not_found}}
        """)
    found = [line.split(": invalid")[0] for line in problems(path)]
    assert found == [f"{parent}:18: chat.stream.events.chunk.content",
                     f"{parent}:23: errors.rules.context.message_matches"]


def test_the_field_a_grandchild_did_not_write_is_at_the_line_of_the_one_that_did(
        parent: Path) -> None:
    child(parent, "errors:\n  rules:\n    extra: {code: x, kind: timeout}\n"
          "    busy: {message_matches: '(open'}\n")
    grandchild = write(parent.parent, "grand", "manifest: 1\nid: grand\nextends: child\n"
                       "errors:\n  rules: {extra: {kind: not_found}, busy: {kind: timeout}}\n")
    found = [line.split(": invalid")[0] for line in problems(grandchild)]
    assert found == [f"{parent.parent / 'child.yaml'}:7: errors.rules.busy.message_matches"]


def test_a_restated_rule_is_a_warning(parent: Path) -> None:
    path = child(parent, """\
        errors:
          rules:
            quota: {kind: quota_exhausted}
            busy: {code: busy}
            context: {kind: invalid_request}
        """)
    result = check_file(path)
    assert result.problems == []
    assert result.warnings == [
        f"{path}:6: errors.rules.quota: warning: restates the parent's rule 'quota'; remove it",
        f"{path}:7: errors.rules.busy: warning: restates the parent's rule 'busy'; remove it",
    ]


# ---------------------------------------------------------------- the schema and the manifests


def _lists_of_mappings(rule: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    found = []
    if rule.get("type") == "list" and (rule.get("schema") or {}).get("type") == "dict":
        found.append(path)
    for key, sub in (rule.get("schema") or {}).items() if rule.get("type") == "dict" else ():
        found.extend(_lists_of_mappings(sub, (*path, key)))
    return found


def test_every_list_of_mappings_in_the_schema_is_a_named_list() -> None:
    found = [p for key, rule in SCHEMA.items() for p in _lists_of_mappings(rule, (key,))]
    assert sorted(found) == sorted(NAMED_LISTS)


def _without_names(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "name"} for item in items]


# The rules deepseek.yaml compiled to before it patched openai's by name (copied then).
DEEPSEEK_EVENTS = [
    {"when": "error", "error": {"message": "error.message", "code": "error.code",
                                "type": "error.type",
                                "status": "error.status_code || error.code"}},
    {"when": "!error", "thinking": "choices[0].delta.reasoning_content",
     "content": "choices[0].delta.content",
     "tool_call": {"each": "choices[0].delta.tool_calls", "key": "index", "id": "id",
                   "name": "function.name", "arguments": "function.arguments"},
     "finish_reason": "choices[0].finish_reason",
     "usage": {"prompt_tokens": "usage.prompt_tokens",
               "completion_tokens": "usage.completion_tokens",
               "total_tokens": "usage.total_tokens",
               "cached_tokens": "usage.prompt_cache_hit_tokens || "
                                "usage.prompt_tokens_details.cached_tokens",
               "reasoning_tokens": "usage.completion_tokens_details.reasoning_tokens"}},
]
DEEPSEEK_RULES = [
    {"code": "context_length_exceeded", "kind": "context_length_exceeded"},
    {"status": 400, "message_matches": "maximum context length",
     "kind": "context_length_exceeded"},
]


def test_deepseek_compiles_to_what_it_did_when_it_copied_openais_rules() -> None:
    data = merged(ROOT / "protocols" / "deepseek.yaml")
    stream = data["chat"]["stream"]
    assert _without_names(stream["events"]) == DEEPSEEK_EVENTS
    assert _without_names(stream["end"]) == [{"data": "[DONE]"}]
    assert _without_names(data["errors"]["rules"]) == DEEPSEEK_RULES
    assert data["chat"]["overrides"] == []
    assert data["auth"] == {"scheme": "bearer", "env": ["DEEPSEEK_API_KEY"]}
    openai = merged(ROOT / "protocols" / "openai.yaml")
    assert data["errors"]["retry_after"] == openai["errors"]["retry_after"]


def test_no_shipped_manifest_repeats_its_parents_rules() -> None:
    for path in sorted((ROOT / "protocols").glob("*.yaml")):
        result = check_file(path)
        assert (result.problems, result.warnings) == ([], []), path


def test_the_documented_example_is_a_valid_child_of_openai(tmp_path: Path) -> None:
    readme = (ROOT / "protocols" / "README.md").read_text()
    section = readme[readme.index("## Changing one rule of the parent"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", 8)]
    path = write(tmp_path, "acme", "manifest: 1\nid: acme\nextends: openai\n"
                 "base_url: https://api.acme.example/v1\n"
                 "auth: {scheme: bearer, env: [ACME_API_KEY]}\n" + example)
    result = check_file(path)
    assert (result.problems, result.warnings) == ([], [])
    data = merged(path)
    assert names(data["errors"]["rules"])[:3] == ["too_big", "context_code", "context_message"]
    assert "quota_code" not in names(data["errors"]["rules"])
    assert data["chat"]["stream"]["events"][1]["usage"]["cached_tokens"] == (
        "usage.prompt_cache_hit_tokens")
