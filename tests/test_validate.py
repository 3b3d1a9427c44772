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
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "manifest(s) valid" in out


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


def test_every_problem_is_reported_at_once(tmp_path):
    text = MINIMAL.format(id="ex").replace("manifest: 1", "manifest: 1\nfoo: 1\nbar: 2")
    found = problems(write(tmp_path, "ex", text))
    assert [p.split(": ")[1] for p in found] == ["bar", "foo"]


def test_missing_required_keys(tmp_path):
    path = write(tmp_path, "ex", "manifest: 1\nid: ex\n")
    found = problems(path)
    assert {p.split(": ")[1] for p in found} == {"auth", "base_url", "chat"}
    assert all(p.startswith(f"{path}:1: ") for p in found)


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("- a\n- b\n", "expected a mapping"),
    ("key: [unclosed\n", "invalid YAML"),
    ("a: 1\na: 2\n", "duplicate key"),
    ("base: &x {a: 1}\nother: *x\n", "aliases are not allowed"),
])
def test_bad_yaml_is_reported_not_raised(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:") and message in found[0]


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


def test_cli_exit_codes_and_output(tmp_path):
    bad = write(tmp_path, "ex", MINIMAL.format(id="ex").replace("id: ex", "id: ex\nzzz: 1"))
    run = subprocess.run([sys.executable, "-m", "engine.validate", str(bad), str(PROTOCOLS)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [f"{bad}:3: zzz: unknown field"]
    assert "Traceback" not in run.stderr and "1 problem(s)" in run.stderr


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
