"""The manifest language's named constructs: JSON null, the role table, header rules,
the frame envelope, and the validator's warnings about restated defaults and rules."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.manifest import clear_cache, load_manifest
from engine.manifest.templates import compile_tree, render_checked
from engine.protocol.classify import classify
from engine.protocol.render import prepare
from engine.types import ChatRequest, Message, ToolCall
from engine.validate import main, validate_all

pytestmark = pytest.mark.fast

CALL = ToolCall("call_1", "get_weather", {"city": "Paris"})
LOOP = ChatRequest((Message.user("Weather?"), Message.assistant("", tool_calls=[CALL]),
                    Message.tool("call_1", "22C")))


def render(tree: object, **ctx: object) -> object:
    return render_checked(compile_tree(tree), ctx, "body", "test")


def test_null_is_sent_where_none_is_omitted() -> None:
    body = render({"a": "{{ null }}", "b": "{{ none }}", "c": ["{{ null }}", "{{ none }}"],
                   "d": {"e": "{{ x or null }}"}}, x="")
    assert body == {"a": None, "c": [None], "d": {"e": None}}
    assert json.dumps(body) == '{"a": null, "c": [null], "d": {"e": null}}'


def test_null_is_falsy_in_conditions() -> None:
    assert render({"$if": "{{ null }}", "then": 1, "else": 2}) == 2


@pytest.fixture
def protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    yield tmp_path
    clear_cache()


def test_a_child_patches_one_role_by_name(protocols: Path) -> None:
    (protocols / "child.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: child
        extends: openai
        base_url: https://llm.example.test/v1
        auth: {scheme: bearer, env: [CHILD_KEY]}
        chat:
          message:
            assistant:
              content: "{{ m.content or null }}"
        """))
    body = prepare(load_manifest("child"), LOOP, "m", api_key="sk-test").json
    assistant = body["messages"][1]
    assert assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    # The other roles are the parent's, untouched.
    assert body["messages"][0] == {"role": "user", "content": "Weather?"}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "22C"}
    parent = prepare(load_manifest("openai"), LOOP, "m", api_key="sk-test").json
    assert "content" not in parent["messages"][1]


def test_message_directive_needs_a_role_table(protocols: Path) -> None:
    source = (Path(__file__).parent.parent / "protocols" / "openai.yaml").read_text()
    start = source.index("  message:\n")
    end = source.index("  body:\n")
    (protocols / "bare.yaml").write_text(source[:start].replace("id: openai", "id: bare")
                                         + source[end:])
    count, problems, _ = validate_all([str(protocols / "bare.yaml")])
    assert count == 1 and len(problems) == 1, problems
    assert "chat.body.messages.do: $message needs a chat.message role table" in problems[0]


def test_header_rules_give_the_providers_retry_instruction() -> None:
    anthropic = load_manifest("anthropic")
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    plain = classify(anthropic, 400, {}, body)
    assert (plain.kind, plain.retryable, plain.retry_forced) == ("invalid_request", False, None)
    forced = classify(anthropic, 400, {"x-should-retry": "true"}, body)
    assert (forced.kind, forced.retryable, forced.retry_forced) == ("invalid_request", True, True)
    overloaded = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    refused = classify(anthropic, 529, {"x-should-retry": " FALSE "}, overloaded)
    assert (refused.kind, refused.retryable, refused.retry_forced) == ("overloaded", False,
                                                                         False)


def test_frame_envelope_is_reachable_from_rules(protocols: Path) -> None:
    from decoding import Fed

    (protocols / "env.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: env
        base_url: https://llm.example.test
        auth: {scheme: none}
        chat:
          path: /chat
          body: {q: "{{ messages[-1].content }}"}
          response: {content: text}
          stream:
            framing: sse
            end: [{when: "frame().event == 'bye'"}]
            events:
              - when: "frame().event == 'oops'"
                error: {message: why, code: "frame().event"}
              - when: "frame().meta.id != null"
                content: "join('#', [text, frame().meta.id])"
        """))
    decoder = Fed(load_manifest("env"), "m")
    events = decoder.feed(b'id: 7\ndata: {"text": "a"}\n\nevent: bye\ndata: {}\n\n')
    assert [e.as_content_delta.text for e in events if e.is_content_delta] == ["a#7"]
    assert decoder.done and decoder.error is None
    failing = Fed(load_manifest("env"), "m")
    failing.feed(b'id: 1\ndata: {"text": "x"}\n\nevent: oops\ndata: {"why": "broken"}\n\n')
    assert failing.error is not None and failing.error.code == "oops"
    assert failing.error.message == "broken" and failing.error.partial.content == "x#1"


def test_validate_warns_about_restated_defaults(protocols: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (protocols / "noisy.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: noisy
        extends: openai
        base_url: https://llm.example.test/v1
        auth: {scheme: bearer, env: [NOISY_KEY]}
        retry: {max_retries: 2, backoff_max: 30}
        errors:
          rules:
            - {code: whatever, kind: not_found}
            - {status: 429, kind: rate_limited}
            - {status: 400, message_matches: "too long", kind: context_length_exceeded}
            - {status: 400, kind: invalid_request}
            - {status: 503, kind: server_error}
            - {status: 404, kind: not_found}
            - {status: [401, 404], kind: authentication}
            - {type: late, kind: timeout}
        """))
    noisy = protocols / "noisy.yaml"
    assert main([str(noisy)]) == 0
    captured = capsys.readouterr()
    # Warnings go to stderr with the problems, the summary to stdout.
    # rules[1] (429) and rules[3] (400) are followed by a rule with no status condition
    # (type: late), which could match them: they are not redundant, and not flagged.
    assert captured.err.splitlines() == [
        f"{noisy}:6: retry.max_retries: warning: restates the default (2); remove it",
    ]
    assert captured.out == "ok: 1 manifest(s) valid (1 warning(s))\n"
    noisy.write_text(noisy.read_text().replace("    - {type: late, kind: timeout}\n", ""))
    assert main([str(noisy)]) == 0
    captured = capsys.readouterr()
    # rules[0] has no status condition, rules[4] differs from 503's meaning (overloaded),
    # rules[5] is shadowed by nothing but is followed by a rule that can also match 404.
    assert captured.err.splitlines() == [
        f"{noisy}:6: retry.max_retries: warning: restates the default (2); remove it",
        f"{noisy}:10: errors.rules[1]: warning: restates what HTTP [429] means anyway "
        "(rate_limited); remove it",
        f"{noisy}:12: errors.rules[3]: warning: restates what HTTP [400] means anyway "
        "(invalid_request); remove it",
    ]
    assert captured.out == "ok: 1 manifest(s) valid (3 warning(s))\n"


def test_validate_warns_about_a_restated_parent_rule(protocols: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    copycat = protocols / "copycat.yaml"
    copycat.write_text(textwrap.dedent("""\
        manifest: 1
        id: copycat
        extends: openai
        base_url: https://llm.example.test/v1
        auth: {scheme: bearer, env: [COPYCAT_KEY]}
        errors:
          rules:
            quota_code: {kind: quota_exhausted}
            region: {kind: not_found}
        chat:
          stream:
            events:
              - when: error
                error:
                  message: error.message
                  code: error.code
                  type: error.type
                  status: error.status_code || error.code
              - {when: "!error", content: "choices[0].delta.content"}
        """))
    assert main([str(copycat)]) == 0
    captured = capsys.readouterr()
    # A patch that changes nothing, and a list item equal to one of the list it replaces;
    # region's patch changes the kind, the second event is not openai's chunk rule.
    assert captured.err.splitlines() == [
        f"{copycat}:8: errors.rules.quota_code: warning: restates the parent's rule "
        "'quota_code'; remove it",
        f"{copycat}:13: chat.stream.events[0]: warning: restates the parent's rule 'error'; "
        "change the parent's list by name instead of repeating it",
    ]
    assert captured.out == "ok: 1 manifest(s) valid (2 warning(s))\n"
