"""engine.validate: every problem reported as file:line: key.path: message, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.manifest import clear_cache, load_manifest
from engine.validate import main, validate_paths

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ROOT / "protocols"

MINIMAL = """\
manifest: 1
id: {id}
base_url: https://example.test/v1
auth: {{scheme: bearer, env: [EXAMPLE_KEY]}}
chat:
  path: /chat
  body:
    model: "{{{{ model }}}}"
    messages:
      $each: "{{{{ messages }}}}"
      as: m
      do: {{role: "{{{{ m.role }}}}", content: "{{{{ m.content }}}}"}}
  response:
    content: answer
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(*paths: Path | str) -> list[str]:
    return validate_paths([str(p) for p in paths])[1]


def test_shipped_manifests_are_valid(capsys):
    assert main([str(PROTOCOLS)]) == 0
    captured = capsys.readouterr()
    shipped = len(list(PROTOCOLS.glob("*.yaml")))
    assert (captured.out, captured.err) == (f"ok: {shipped} manifest(s) valid\n", "")


def test_minimal_manifest_is_valid(tmp_path):
    assert problems(write(tmp_path, "ex", MINIMAL.format(id="ex"))) == []


@pytest.mark.parametrize("edit, line, key, message", [
    (("base_url: https://example.test/v1", "base_url: https://example.test/v1\ncolour: red"),
     4, "colour", "unknown field"),
    (("auth: {scheme: bearer", "auth: {scheme: magic"), 4, "auth.scheme", "unallowed value"),
    (("  path: /chat", "  path: /chat\n  retries: 3"), 7, "chat.retries", "unknown field"),
    (("    content: answer", "    content: 'answer[?'"), 14, "chat.response.content",
     "invalid JMESPath"),
    (('    model: "{{ model }}"', '    model: "{{ model "'), 8, "chat.body.model",
     "syntax error"),
    (('    model: "{{ model }}"', '    model: "{{ modle }}"'), 8, "chat.body.model",
     "undefined"),
    (('    model: "{{ model }}"', '    model: "{{ \'\'.__class__ }}"'), 8, "chat.body.model",
     "unsafe"),
    (("id: ex", "id: other"), 2, "id", "must equal the file name"),
])
def test_each_mistake_is_located(tmp_path, edit, line, key, message):
    path = write(tmp_path, "ex", MINIMAL.format(id="ex").replace(*edit))
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line}: {key}: "), found
    assert message in found[0]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path):
    text = MINIMAL.format(id="ex").replace("manifest: 1", "manifest: 1\nfoo: 1\nbar: 2")
    path = write(tmp_path, "ex", text)
    assert problems(path) == [f"{path}:2: foo: unknown field", f"{path}:3: bar: unknown field"]


def test_missing_required_keys(tmp_path):
    path = write(tmp_path, "ex", "manifest: 1\nid: ex\n")
    found = problems(path)
    assert {p.split(": ")[1] for p in found} == {"auth", "base_url", "chat"}
    assert all(p.startswith(f"{path}:1: ") for p in found)


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("- a\n- b\n", "expected a mapping"),
    ("key: [unclosed\n", "invalid YAML"),
    ("a: 1\nb: 2\n\tc: 3\n", "invalid YAML"),
    ("a: 1\na: 2\n", "duplicate key"),
    ("base: &x {a: 1}\nother: *x\n", "aliases are not allowed"),
])
def test_bad_yaml_is_reported_not_raised(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:") and message in found[0]


@pytest.mark.parametrize("content, line, message", [
    # An unclosed bracket or quote is reported where it opens, not where the parser gave up.
    ("manifest: 1\nid: bad\nbase_url: [unclosed\nauth: {scheme: none}\n", 3,
     "invalid YAML: while parsing a flow sequence that starts here: did not find expected "
     "',' or ']' (at line 4, column 5)"),
    ("manifest: 1\nid: bad\nbase_url: [unclosed\n", 3,
     "invalid YAML: while parsing a flow sequence that starts here: did not find expected "
     "',' or ']' (at the end of the file)"),
    ("manifest: 1\nid: 'bad\nname: x\n", 2,
     "invalid YAML: while scanning a quoted scalar that starts here: found unexpected end "
     "of stream (at the end of the file)"),
    ("manifest: 1\nid: bad\nbase_url\nauth: 1\n", 3,
     "invalid YAML: while scanning a simple key that starts here: could not find expected "
     "':' (at line 4, column 1)"),
    # Anything else at the parser's own position, numbered as the file numbers its lines.
    ("manifest: 1\nid: bad\nbase_url: a: b\n", 3,
     "invalid YAML: mapping values are not allowed in this context"),
    ("manifest: 1\nchat:\n  - x\n c: 2\n", 4, "invalid YAML: did not find expected key"),
])
def test_yaml_syntax_errors_are_reported_at_their_line(tmp_path, content, line, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    assert problems(path) == [f"{path}:{line}: (top): {message}"]


def test_binary_and_non_utf8_files(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin.yaml").write_bytes(b"id: caf\xe9\n")
    found = problems(tmp_path / "bin.yaml", tmp_path / "latin.yaml")
    assert "binary file" in found[0] and "not UTF-8" in found[1]


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lines.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [" + ",".join([f"*{prev}"] * 9)
                     + "]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "aliases are not allowed" in problems(path)[0]


def test_extends_missing_parent_and_cycles(tmp_path):
    write(tmp_path, "a", "manifest: 1\nid: a\nextends: b\n")
    write(tmp_path, "b", "manifest: 1\nid: b\nextends: a\n")
    write(tmp_path, "c", "manifest: 1\nid: c\nextends: nowhere\n")
    found = problems(tmp_path / "a.yaml", tmp_path / "c.yaml")
    assert found[0].startswith(f"{tmp_path / 'b.yaml'}:3: extends: extends cycle: a.yaml -> b.yaml")
    assert found[1].startswith(f"{tmp_path / 'c.yaml'}:3: extends: no manifest named 'nowhere'")


def test_deep_extends_chain_is_bounded(tmp_path):
    for i in range(12):
        write(tmp_path, f"m{i}", f"manifest: 1\nid: m{i}\nextends: m{i + 1}\n")
    write(tmp_path, "m12", MINIMAL.format(id="m12"))
    assert "extends chain deeper" in problems(tmp_path / "m0.yaml")[0]


def test_extends_merges_and_child_problems_point_at_child(tmp_path):
    write(tmp_path, "base", MINIMAL.format(id="base"))
    child = write(tmp_path, "child", """\
        manifest: 1
        id: child
        extends: base
        base_url: https://child.test
        chat:
          response:
            content: "bad[?"
        auth:
          env: [CHILD_API_KEY]
        """)
    found = problems(child)
    assert found == [f"{child}:7: chat.response.content: invalid JMESPath 'bad[?': "
                     + found[0].split("invalid JMESPath 'bad[?': ")[1]]


def test_extends_null_deletes_and_lists_replace(tmp_path):
    write(tmp_path, "base", MINIMAL.format(id="base").replace(
        "base_url: https://example.test/v1",
        "base_url: https://example.test/v1\nheaders: {x-one: '1', x-two: '2'}"))
    write(tmp_path, "child", "manifest: 1\nid: child\nextends: base\nheaders: {x-two: null}\n")
    assert problems(tmp_path / "child.yaml") == []
    from engine.manifest import resolve
    merged, chain = resolve(tmp_path / "child.yaml")
    assert merged["headers"] == {"x-one": "1"} and [d.path.name for d in chain] == [
        "child.yaml", "base.yaml"]


def test_registry_names_are_checked(tmp_path):
    text = MINIMAL.format(id="ex") + "  stream:\n    framing: carrier-pigeon\n    eof_ok: true\n" \
        "    events:\n      - {when: x, content: x}\n"
    found = problems(write(tmp_path, "ex", text))
    assert any("chat.stream.framing: unallowed value carrier-pigeon" in p for p in found)


def test_missing_paths_and_empty_dirs(tmp_path):
    assert problems(tmp_path / "nope.yaml")[0].endswith("no such file or directory")
    assert "no manifests" in problems(tmp_path)[0]


def test_cli_problems_on_stderr_summary_on_stdout(tmp_path):
    bad = write(tmp_path, "ex", MINIMAL.format(id="ex").replace("id: ex", "id: ex\nzzz: 1"))
    run = subprocess.run([sys.executable, "-m", "engine.validate", str(bad), str(PROTOCOLS)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    shipped = len(list(PROTOCOLS.glob("*.yaml")))
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"{bad}:3: zzz: unknown field"]
    assert run.stdout.splitlines() == [f"1 problem(s) in {shipped + 1} manifest(s)"]
    good = subprocess.run([sys.executable, "-m", "engine.validate", str(PROTOCOLS)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert (good.returncode, good.stdout, good.stderr) == (
        0, f"ok: {shipped} manifest(s) valid\n", "")


def test_user_manifest_directory_comes_first(tmp_path, monkeypatch):
    write(tmp_path, "myprov", MINIMAL.format(id="myprov"))
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    try:
        manifest = load_manifest("myprov")
        assert manifest.base_url == "https://example.test/v1"
        assert load_manifest("openai").id == "openai"
    finally:
        clear_cache()


yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["manifest", "id", "chat", "auth", "body", "path",
                                       "response", "stream", "errors", "rules", "$each",
                                       "extends", "base_url", "x"]), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yamlish, raw=st.binary(max_size=64))
def test_validate_never_raises_on_arbitrary_input(tmp_path, doc, raw):
    import yaml

    (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "raw.yaml").write_bytes(raw)
    count, found = validate_paths([str(tmp_path / "fuzz.yaml"), str(tmp_path / "raw.yaml")])
    assert count == 2
    assert all(isinstance(p, str) and p.startswith(str(tmp_path)) for p in found)


def test_regexes_that_backtrack_are_searched_in_bounded_time(tmp_path, monkeypatch):
    import time

    from engine.protocol.classify import classify

    text = MINIMAL.format(id="ex") + textwrap.dedent("""\
        errors:
          message: error
          rules:
            - {message_matches: "(a|aa)+$", kind: context_length_exceeded}
            - {status: 400, kind: invalid_request}
        """)
    write(tmp_path, "ex", text)
    assert problems(tmp_path / "ex.yaml") == []
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    try:
        started = time.monotonic()
        error = classify(load_manifest("ex"), 400, {}, b'{"error": "' + b"a" * 3000 + b'!"}')
        assert time.monotonic() - started < 1.0
    finally:
        clear_cache()
    assert error.kind == "invalid_request"  # the runaway pattern counted as no match


# ---------------------------------------------------------------- one line per problem, at its line

SYNTAX = "unexpected end of template, expected 'end of print statement'."


def child_of_openai(tmp_path: Path, name: str, chat: str) -> Path:
    """A manifest extending the built-in openai one, with *chat* as its chat section.

    With its own base_url it inherits no catalogue, so it lists the model the dry run
    needs (after chat, so that the lines of chat's keys stay where the cases say)."""
    return write(tmp_path, name, f"manifest: 1\nid: {name}\nextends: openai\n"
                 "base_url: https://llm.example.test/v1\n"
                 "auth: {scheme: bearer, env: [CHILD_KEY]}\nchat:\n"
                 + textwrap.indent(textwrap.dedent(chat), "  ")
                 + "models: {o3-mini: {context_window: 200000, max_output: 100000}}\n")


@pytest.mark.parametrize("chat, line, key, message", [
    # A bad template in the base body: once, not again for each override and stream body
    # that merges it (that was four lines, two at chat.overrides[0].body.model).
    ("""\
     body:
       model: "{{ model "
     """, 8, "chat.body.model", f"template syntax error in '{{{{ model ': {SYNTAX}"),
    # A bad template in an override's body: once, at that key, not at the base body's.
    ("""\
     overrides:
       - match: "^big"
         body:
           max_tokens: "{{ params.max_tokens "
     """, 10, "chat.overrides[0].body.max_tokens",
     f"template syntax error in '{{{{ params.max_tokens ': {SYNTAX}"),
    # ... in an override's stream_body (it used to be reported at chat.body.foo, line 6).
    ("""\
     overrides:
       - match: "^big"
         stream_body:
           foo: "{{ bar "
     """, 10, "chat.overrides[0].stream_body.foo",
     f"template syntax error in '{{{{ bar ': {SYNTAX}"),
    # ... in the stream body.
    ("""\
     stream:
       body:
         stream: "{{ tru "
     """, 9, "chat.stream.body.stream", f"template syntax error in '{{{{ tru ': {SYNTAX}"),
    # Found by the dry run, in an override's body (o3-mini is one of openai's models).
    ("""\
     overrides:
       - match: "^o3"
         body:
           max_completion_tokens: "{{ params.max_tokenz }}"
     """, 10, "chat.overrides[0].body.max_completion_tokens",
     "undefined value: 'dict object' has no attribute 'max_tokenz'"),
    # ... in the stream body.
    ("""\
     stream:
       body:
         stream_options: {include_usage: "{{ tru }}"}
     """, 9, "chat.stream.body.stream_options.include_usage",
     "undefined value: 'tru' is undefined"),
    # ... in the role table, where $message renders it.
    ("""\
     message:
       assistant:
         content: "{{ m.contnt }}"
     """, 9, "chat.message.assistant.content",
     "undefined value: 'dict object' has no attribute 'contnt'"),
])
def test_a_template_problem_is_one_line_at_the_key_that_holds_it(tmp_path, chat, line, key,
                                                                  message):
    path = child_of_openai(tmp_path, "child", chat)
    assert problems(path) == [f"{path}:{line}: {key}: {message}"]


def test_a_problem_in_a_parent_is_reported_at_the_parents_line(tmp_path):
    base = write(tmp_path, "base", MINIMAL.format(id="base").replace(
        '    model: "{{ model }}"', '    model: "{{ modle }}"'))
    child = write(tmp_path, "child", "manifest: 1\nid: child\nextends: base\nchat:\n"
                  "  path: /other\n")
    assert problems(child) == [f"{base}:8: chat.body.model: undefined value: 'modle' is "
                               "undefined"]


def test_a_parents_problem_is_listed_once_for_a_directory(tmp_path):
    base = write(tmp_path, "base", MINIMAL.format(id="base").replace(
        '    model: "{{ model }}"', '    model: "{{ model "'))
    write(tmp_path, "kid", "manifest: 1\nid: kid\nextends: base\nname: Kid\n")
    run = subprocess.run([sys.executable, "-m", "engine.validate", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"{base}:8: chat.body.model: template syntax error in '{{{{ model ': {SYNTAX}"]
    assert run.stdout.splitlines() == ["1 problem(s) in 2 manifest(s)"]


def test_an_id_mismatch_is_reported_with_the_other_problems(tmp_path):
    path = write(tmp_path, "ex", MINIMAL.format(id="other").replace(
        '    model: "{{ model }}"', '    model: "{{ modle }}"'))
    assert problems(path) == [
        f"{path}:2: id: must equal the file name 'ex'",
        f"{path}:8: chat.body.model: undefined value: 'modle' is undefined",
    ]
    schema = write(tmp_path, "sc", MINIMAL.format(id="other").replace("  path: /chat",
                                                                      "  pth: /chat"))
    assert problems(schema) == [
        f"{schema}:2: id: must equal the file name 'sc'",
        f"{schema}:5: chat.path: required field",
        f"{schema}:6: chat.pth: unknown field; did you mean 'path'?",
    ]


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    path = write(tmp_path, "ex", MINIMAL.format(id="ex").replace(
        "  path: /chat", "  path: /chat\n  endpont: /x").replace(
        "  response:", "  respons:\n    content: a\n  response:").replace(
        "auth: {scheme: bearer, env: [EXAMPLE_KEY]}",
        "auth: {scheme: beare, env: [EXAMPLE_KEY], hedaer: x}\ncapabilites: {tools: true}") + (
        "  message:\n    asistant: {content: x}\n"))
    assert problems(path) == [
        f"{path}:4: auth.hedaer: unknown field; did you mean 'header'?",
        f"{path}:4: auth.scheme: unallowed value beare; did you mean 'bearer'?",
        f"{path}:5: capabilites: unknown field; did you mean 'capabilities'?",
        f"{path}:8: chat.endpont: unknown field",  # nothing allowed there is close
        f"{path}:15: chat.respons: unknown field; did you mean 'response'?",
        f"{path}:20: chat.message.asistant: unknown field; did you mean 'assistant'?",
    ]


def test_a_list_items_unknown_key_is_located_with_its_index(tmp_path):
    path = write(tmp_path, "ex", MINIMAL.format(id="ex") + textwrap.dedent("""\
        errors:
          rules:
            - {status: 400, kind: invalid_request}
            - {status: 401, knd: authentication}
        """))
    assert problems(path) == [
        f"{path}:18: errors.rules[1].knd: unknown field; did you mean 'kind'?"]


# ---------------------------------------------------------------- ids and file access

def test_an_overlong_extends_is_one_report_line(tmp_path):
    path = write(tmp_path, "ex", "manifest: 1\nid: ex\nextends: " + "a" * 5000 + "\n")
    assert problems(path) == [
        f"{path}:3: extends: invalid manifest id '{'a' * 40}'... (5000 characters): an id "
        "is 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or "
        "digit, without '..'"]


@pytest.mark.parametrize("name, shown", [
    ("a" * 300, f"'{'a' * 40}'... (300 characters)"),
    ("Bad/Name", "'Bad/Name'"),
    ("a..b", "'a..b'"),
    ("a" * 65, f"'{'a' * 40}'... (65 characters)"),
])
def test_an_invalid_provider_id_is_an_invalid_request(name, shown):
    from engine.errors import ManifestError

    with pytest.raises(ManifestError) as info:
        load_manifest(name)
    assert info.value.kind == "invalid_request"
    assert info.value.message == (
        f"invalid provider id {shown}: an id is 1 to 64 lower-case letters, digits, '.', '_' "
        "or '-', starting with a letter or digit, without '..'")


def test_a_client_for_an_overlong_provider_id_raises_engine_error():
    from engine import AiClient, EngineError, SyncAiClient

    with pytest.raises(EngineError) as info:
        SyncAiClient.create("a" * 300 + "/m")
    assert info.value.kind == "invalid_request" and "invalid provider id" in info.value.message

    async def create() -> None:
        await AiClient.create("a" * 300 + "/m")

    import asyncio

    with pytest.raises(EngineError) as again:
        asyncio.run(create())
    assert again.value.message == info.value.message


@pytest.mark.parametrize("name", ["Big", "a..b", "a" * 65])
def test_an_ill_formed_id_in_a_manifest_is_one_line(tmp_path, name):
    path = write(tmp_path, name, MINIMAL.format(id=name))
    shown = repr(name) if len(name) <= 40 else f"'{name[:40]}'... ({len(name)} characters)"
    assert problems(path) == [
        f"{path}:2: id: invalid manifest id {shown}: an id is 1 to 64 lower-case letters, "
        "digits, '.', '_' or '-', starting with a letter or digit, without '..'"]


def test_a_64_character_id_is_valid_and_found(tmp_path, monkeypatch):
    name = "a" * 63 + "z"
    write(tmp_path, name, MINIMAL.format(id=name))
    assert problems(tmp_path / f"{name}.yaml") == []
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    try:
        assert load_manifest(name).id == name
    finally:
        clear_cache()


def test_an_unreadable_path_is_one_report_line(tmp_path):
    long = str(tmp_path / ("a" * 5000))
    assert problems(long) == [f"{long}:1: (top): cannot read: File name too long"]


@pytest.mark.parametrize("override, want", [
    # stream framing is not per model
    ("capabilities: {stream: false}", "chat.overrides[0].capabilities.stream: unknown field"),
    ("capabilities: {vision: true}", "chat.overrides[0].capabilities.vision: unknown field"),
    ("capabilities: {parts: {image: [data, fetch, url]}}",
     "chat.overrides[0].capabilities.parts.image: fetch sends a downloaded URL as data: "
     "it needs data and excludes url"),
    ("capabilities: {part_limits: {video: {max_bytes: 1}}}",
     "chat.overrides[0].capabilities.part_limits.video: unknown field"),
])
def test_an_override_capabilities_section_is_checked_like_the_top_level_one(
        tmp_path, override, want):
    path = child_of_openai(tmp_path, "child",
                           f"overrides:\n  - {{match: '^big', {override[:-1]}}}}}\n")
    assert problems(path) == [f"{path}:8: {want}"]


def test_an_override_capabilities_merge_over_the_top_level_ones(tmp_path, monkeypatch):
    path = child_of_openai(tmp_path, "child", """\
        overrides:
          - match: "^text-"
            capabilities: {parts: {image: null}, part_limits: {image: null},
                           response_format: [json_object]}
        """)
    assert problems(path) == []
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    try:
        manifest = load_manifest("child")
    finally:
        clear_cache()
    text, other = manifest.for_model("text-1"), manifest.for_model("o3-mini")
    assert set(text.part_sources) == {"document"}
    assert text.response_formats == {"json_object"}
    assert set(other.part_sources) == {"image", "document"}
    assert other.response_formats == {"json_schema", "json_object"}
    assert other is manifest and manifest.for_model("text-1") is text  # computed once
