"""Hostile manifests: what a manifest downloaded from the internet cannot do.

Manifests in ``AI_PROTOCOL_PATH`` directories are untrusted input. These tests
write real manifests into temporary directories and prove, through the public
API (``engine.validate`` and ``AiClient`` over ``httpx.MockTransport``), that a
template cannot read files, environment variables or the API key, cannot make
the engine do unbounded work, and that every such manifest is reported as a
validation problem (never a traceback) and refused with ``invalid_request``
before anything reaches the network.

Cases that may allocate without bound or never return run in a child process
with a memory ceiling and a wall-clock timeout, so a hang or a memory bomb
fails its test instead of taking the suite down.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engine import AiClient, EngineError
from engine.manifest import clear_cache
from engine.manifest import templates as engine_templates
from engine.validate import validate_paths

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-hostile-APIKEY-4d1c7e"
ENV_NAME = "HOSTILE_SECRET_ENV"
ENV_SECRET = "env-SECRET-93b1f0c2a7"
FILE_MARKER = "FILE-MARKER-7f3a9c51"
ANSWER = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
FAST = 1.0  # seconds: every refusal must be at least this quick
# Seconds of wall time after which a child counts as hung. The speed checks
# (FAST) use the child's own CPU time, so parallel children do not make them flaky.
CHILD_TIMEOUT = 15.0
HEADROOM = 256 << 20  # bytes a child may allocate beyond what it holds after imports


# ---------------------------------------------------------------- helpers

def manifest(pid: str = "evil", *, body: dict[str, Any] | None = None,
             headers: dict[str, Any] | None = None, path: str = "/chat",
             query: Any = None, extra: dict[str, Any] | None = None) -> str:
    """A complete, otherwise valid manifest with the given hostile parts."""
    chat: dict[str, Any] = {
        "path": path,
        "body": {"model": "{{ model }}", "messages": "{{ messages }}", **(body or {})},
        "response": {"content": "choices[0].message.content",
                     "finish_reason": "choices[0].finish_reason"},
    }
    if query is not None:
        chat["query"] = query
    doc: dict[str, Any] = {
        "manifest": 1,
        "id": pid,
        "base_url": "https://hostile.test/v1",
        "auth": {"scheme": "bearer", "env": ["HOSTILE_TEST_KEY"]},
        "chat": chat,
    }
    if headers:
        doc["headers"] = headers
    for key, value in (extra or {}).items():
        doc[key] = value
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    validate_s: float = 0.0
    error: EngineError | None = None
    load_s: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)
    content: str | None = None

    def texts(self) -> list[str]:
        out = list(self.problems)
        if self.error is not None:
            out += [str(self.error), repr(self.error), self.error.message]
        for req in self.requests:
            # The key belongs in exactly one place: the auth scheme's header.
            assert req.headers.get("authorization") == f"Bearer {API_KEY}"
            others = [(k, v) for k, v in req.headers.multi_items() if k != "authorization"]
            out += [str(req.url), repr(others), req.content.decode("utf-8", "replace")]
        return out


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "secret.txt").write_text(f"{FILE_MARKER}\n")
    (directory / "secret.yaml").write_text(f"marker: {FILE_MARKER}\n")
    for name, text in files.items():
        (directory / name).write_text(text)


async def run_case(directory: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str],
                   provider: str = "evil", user: str = "hi") -> Outcome:
    """Validate, then load and call the manifest; capture everything that was sent."""
    write_files(directory, files)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(directory))
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    monkeypatch.delenv("HOSTILE_TEST_KEY", raising=False)
    clear_cache()
    out = Outcome()
    started = time.perf_counter()
    _, out.problems = validate_paths([str(directory / f"{provider}.yaml")])
    out.validate_s = time.perf_counter() - started

    def handler(request: httpx.Request) -> httpx.Response:
        out.requests.append(request)
        return httpx.Response(200, json=ANSWER)

    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = await AiClient.create(f"{provider}/m", api_key=API_KEY, http_client=http,
                                           max_retries=0)
            resp = await client.chat().user(user).execute()
            out.content = resp.content
    except EngineError as exc:
        out.error = exc
    finally:
        out.load_s = time.perf_counter() - started
        clear_cache()
    return out


def assert_no_secrets(texts: list[str]) -> None:
    for text in texts:
        for secret in (FILE_MARKER, ENV_SECRET, API_KEY):
            assert secret not in text, f"{secret!r} leaked into {text[:300]!r}"


def assert_refused(out: Outcome) -> None:
    """Reported by validate, refused with invalid_request at load, nothing sent, fast."""
    assert out.problems, "engine.validate accepted a hostile manifest"
    for line in out.problems:
        assert "internal error" not in line, line[:300]
        assert "MemoryError" not in line and "RecursionError" not in line, line[:300]
    assert out.validate_s < FAST, f"validation took {out.validate_s:.2f}s"
    assert out.error is not None, f"the hostile manifest loaded and answered {out.content!r}"
    assert out.error.kind == "invalid_request", repr(out.error)
    assert out.load_s < FAST, f"refusal took {out.load_s:.2f}s"
    assert out.requests == [], "a hostile manifest reached the network"
    assert_no_secrets(out.texts())


# ---------------------------------------------------------------- control

async def test_control_a_benign_manifest_loads_and_sends(tmp_path, monkeypatch):
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": manifest(
        headers={"x-model": "{{ model }}"})})
    assert out.problems == [] and out.error is None and out.content == "ok"
    assert len(out.requests) == 1
    assert out.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


# ---------------------------------------------------------------- no files, no objects

FILE_READS = [
    "{% include 'secret.txt' %}",
    "{% import 'secret.txt' as s %}{{ s }}",
    "{% from 'secret.txt' import marker %}{{ marker }}",
    "{% extends 'secret.txt' %}",
    "{{ self }}",
    "{{ self._TemplateReference__context }}",
    "{{ open('secret.txt').read() }}",
    "{{ __import__('os').popen('cat secret.txt').read() }}",
    "{{ lipsum.__globals__['os'].popen('cat secret.txt').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('cat secret.txt').read() }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace(a=1) }}",
    "{{ namespace.__init__.__globals__.os }}",
    "{{ config.items() }}",
    "{{ config.__class__.__init__.__globals__['os'] }}",
    "{{ request.application.__globals__.__builtins__.open('secret.txt').read() }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages[0].__class__ }}",
    "{{ range.__globals__ }}",
    "{{ range.__builtins__ }}",
    "{{ range.func_globals }}",
    "{{ range.__self__ }}",
    "{{ range.__globals__['__builtins__']['open']('secret.txt').read() }}",
    "{{ dict.__init__.__globals__ }}",
    "{{ model|attr('__class__')|attr('__mro__') }}",
    "{{ model|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ messages|map(attribute='__class__')|list }}",
    "{{ messages|sort(attribute='__class__.__init__.__globals__')|list }}",
    "{{ '{0.__class__}'.format(model) }}",
    "{{ '{0.__globals__}'.format(range) }}",
    "{{ '{0.__init__.__globals__[os]}'.format(lipsum) }}",
    "{{ '{m.__class__.__mro__}'.format_map({'m': model}) }}",
    "{{ messages.__getitem__(0) }}",
    "{{ messages.append(1) }}",
]


@pytest.mark.parametrize("template", FILE_READS)
async def test_a_template_cannot_read_files_or_reach_python_objects(template, tmp_path,
                                                                   monkeypatch):
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": manifest(body={"x": template})})
    assert_refused(out)


@pytest.mark.parametrize("where", ["headers", "path", "query", "stream_body", "override"])
@pytest.mark.parametrize("template", [
    "{% include 'secret.txt' %}",
    "{{ lipsum.__globals__.os.popen('cat secret.txt').read() }}",
    "{{ self._TemplateReference__context }}",
])
async def test_every_template_location_is_sandboxed(where, template, tmp_path, monkeypatch):
    stream = {"body": {"stream": True}, "framing": "sse", "end": [{"data": "[DONE]"}],
              "events": [{"when": "choices", "content": "choices[0].delta.content"}]}
    text = {
        "headers": manifest(headers={"x-evil": template}),
        "path": manifest(path=f"/chat/{template}"),
        "query": manifest(query={"q": template}),
        "stream_body": manifest(),
        "override": manifest(),
    }[where]
    if where in ("stream_body", "override"):
        doc = yaml.safe_load(text)
        if where == "stream_body":
            doc["chat"]["stream"] = {**stream, "body": {"stream": True, "x": template}}
        else:
            doc["models"] = {"m": {"context_window": 10}}
            doc["chat"]["overrides"] = [{"match": "^m$", "body": {"x": template}}]
        text = yaml.safe_dump(doc, sort_keys=False, width=10_000)
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": text})
    assert_refused(out)


@pytest.mark.parametrize("template", [
    "{{ '%s' % self }}",
    "{{ '%s' % range }}",
    "{{ '%r' % lipsum }}",
    "{{ '%(a)s' % {'a': self} }}",
    "{{ '%s' % messages }}",
    "{{ self|string }}",
    "{{ range|string }}",
])
async def test_percent_formatting_of_objects_reveals_nothing(template, tmp_path, monkeypatch):
    """``%`` and ``|string`` only ever give a repr: refused, or no file/env/key in the request."""
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": manifest(body={"x": template})})
    for line in out.problems:
        assert "internal error" not in line, line
    assert_no_secrets(out.texts())
    for req in out.requests:
        body = req.content.decode()
        assert "__globals__" not in body and "__builtins__" not in body


# ---------------------------------------------------------------- no environment

ENV_TEMPLATES = [
    "{{ environ }}",
    "{{ env }}",
    "{{ env.HOSTILE_SECRET_ENV }}",
    "{{ HOSTILE_SECRET_ENV }}",
    "{{ os.environ }}",
    "{{ os.environ['HOSTILE_SECRET_ENV'] }}",
    "{{ lipsum.__globals__.os.environ }}",
    "{{ cycler.__init__.__globals__.os.environ.HOSTILE_SECRET_ENV }}",
    "{{ range.__globals__['os'].environ }}",
    "{{ self._TemplateReference__context.environ }}",
    "{{ '{0.environ}'.format(os) }}",
]


@pytest.mark.parametrize("template", ENV_TEMPLATES)
async def test_a_template_cannot_read_environment_variables(template, tmp_path, monkeypatch):
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": manifest(body={"x": template})})
    assert_refused(out)


@pytest.mark.parametrize("part, value", [
    ("header", "${HOSTILE_SECRET_ENV}"),
    ("header", "$HOSTILE_SECRET_ENV"),
    ("header", "%HOSTILE_SECRET_ENV%"),
    ("header", "$(printenv HOSTILE_SECRET_ENV)"),
    ("path", "/chat/${HOSTILE_SECRET_ENV}"),
    ("body", "${HOSTILE_SECRET_ENV}"),
    ("query", "$HOSTILE_SECRET_ENV"),
    ("base_url", "https://hostile.test/${HOSTILE_SECRET_ENV}"),
])
async def test_no_shell_style_expansion_anywhere(part, value, tmp_path, monkeypatch):
    """Literal ``$VAR`` strings are sent as written: the environment never leaks into a request."""
    text = {
        "header": manifest(headers={"x-probe": value}),
        "path": manifest(path=value),
        "body": manifest(body={"probe": value}),
        "query": manifest(query={"probe": value}),
        "base_url": manifest().replace("https://hostile.test/v1", value),
    }[part]
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": text})
    assert out.problems == [] and out.error is None
    assert len(out.requests) == 1
    assert_no_secrets(out.texts())
    if part == "header":
        assert out.requests[0].headers["x-probe"] == value
    if part == "body":
        assert json.loads(out.requests[0].content)["probe"] == value


async def test_jmespath_paths_read_the_response_only(tmp_path, monkeypatch):
    """Response/error paths naming an environment variable see only the JSON they are given."""
    doc = yaml.safe_load(manifest())
    doc["chat"]["response"] = {"content": ENV_NAME, "thinking": f"env.{ENV_NAME}",
                               "finish_reason": "choices[0].finish_reason"}
    doc["errors"] = {"message": ENV_NAME, "code": f"environ.{ENV_NAME}"}
    out = await run_case(tmp_path, monkeypatch,
                         {"evil.yaml": yaml.safe_dump(doc, sort_keys=False)})
    assert out.problems == [] and out.error is None
    assert out.content == ""
    assert_no_secrets(out.texts())


@pytest.mark.parametrize("tagged", [
    f"!!python/object/apply:os.getenv [{ENV_NAME}]",
    f"!ENV '${{{ENV_NAME}}}'",
    "!!python/name:os.environ",
    "!!python/object/apply:subprocess.check_output [[cat, secret.txt]]",
    "!!python/object/new:str {state: !!python/tuple [x]}",
])
async def test_yaml_tags_cannot_run_code_or_read_the_environment(tagged, tmp_path, monkeypatch):
    text = manifest(headers={"x-probe": "PLACEHOLDER"}).replace("'PLACEHOLDER'", tagged)
    text = text.replace("PLACEHOLDER", tagged)
    assert tagged in text
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": text})
    assert_refused(out)


# ---------------------------------------------------------------- the key only via auth

@pytest.mark.parametrize("part, template", [
    ("body", "{{ api_key }}"),
    ("body", "{{ key }}"),
    ("body", "{{ auth }}"),
    ("body", "{{ secrets }}"),
    ("body", "{{ headers }}"),
    ("body", "{{ auth.key }}"),
    ("body", "{{ self._TemplateReference__context.api_key }}"),
    ("header", "{{ api_key }}"),
    ("header", "Bearer {{ key }}"),
    ("path", "/chat/{{ api_key }}"),
    ("query", "{{ key }}"),
])
async def test_the_api_key_is_only_reachable_through_the_auth_scheme(part, template, tmp_path,
                                                                     monkeypatch):
    text = {
        "body": manifest(body={"k": template}),
        "header": manifest(headers={"x-key": template}),
        "path": manifest(path=template),
        "query": manifest(query={"k": template}),
    }[part]
    out = await run_case(tmp_path, monkeypatch, {"evil.yaml": text})
    assert_refused(out)


# ---------------------------------------------------------------- YAML and extends bounds

def _chain(length: int) -> dict[str, str]:
    files = {}
    for i in range(length):
        parent = f"c{i + 1}" if i + 1 < length else "openai"
        files[f"c{i}.yaml"] = f"manifest: 1\nid: c{i}\nextends: {parent}\n"
    return files


def _laughs() -> str:
    lines = ["manifest: 1", "id: laughs", 'a: &a ["lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


YAML_BOMBS = {
    "extends_cycle": ("cyca", {"cyca.yaml": "manifest: 1\nid: cyca\nextends: cycb\n",
                               "cycb.yaml": "manifest: 1\nid: cycb\nextends: cyca\n"}),
    "extends_self_cycle": ("selfy", {"selfy.yaml": "manifest: 1\nid: selfy\nextends: selfy\n"}),
    "extends_50_deep": ("c0", _chain(50)),
    "extends_path_traversal": ("trav", {"trav.yaml": "manifest: 1\nid: trav\n"
                                                     "extends: ../../../../etc/passwd\n"}),
    "extends_secret_file": ("sec", {"sec.yaml": "manifest: 1\nid: sec\nextends: secret\n"}),
    "billion_laughs": ("laughs", {"laughs.yaml": _laughs()}),
    "alias_only": ("alias", {"alias.yaml": "manifest: 1\nid: alias\nname: *nothing\n"}),
    "two_megabytes": ("big", {"big.yaml": "manifest: 1\nid: big\n# " + "x" * (2 << 20) + "\n"}),
    "nested_10000_flow_lists": ("deep", {"deep.yaml": "manifest: 1\nid: deep\nname: "
                                         + "[" * 10_000 + "]" * 10_000 + "\n"}),
    "nested_10000_flow_maps": ("deepm", {"deepm.yaml": "manifest: 1\nid: deepm\nname: "
                                         + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"}),
    "nested_10000_unclosed": ("open", {"open.yaml": "manifest: 1\nid: open\nname: "
                                       + "[" * 10_000 + "\n"}),
    "nested_2000_block": ("block", {"block.yaml": "manifest: 1\nid: block\nname:\n" + "".join(
        " " * (i + 1) + "- \n" for i in range(2000))}),
    "nul_bytes": ("nul", {"nul.yaml": "manifest: 1\nid: nul\n\x00\x00\n"}),
}


@pytest.mark.parametrize("name", sorted(YAML_BOMBS))
async def test_yaml_and_extends_bombs_are_refused_quickly(name, tmp_path, monkeypatch):
    provider, files = YAML_BOMBS[name]
    out = await run_case(tmp_path, monkeypatch, files, provider=provider)
    assert_refused(out)


def test_no_unsafe_yaml_loader_anywhere_in_the_engine():
    """Every YAML load in engine/ (and the fixture tooling) goes through a safe loader."""
    unsafe_names = {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader",
                    "CFullLoader", "BaseLoader"}
    safe_calls = {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "dump",
                  "compose", "compose_all"}
    problems: list[str] = []
    files = [*sorted((ROOT / "engine").rglob("*.py")), *sorted((ROOT / "conformance")
                                                                .glob("*.py"))]
    assert files
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "yaml":
                if node.attr in unsafe_names:
                    problems.append(f"{where}: yaml.{node.attr}")
                if node.attr in {"load", "load_all", "unsafe_load", "unsafe_load_all",
                                 "full_load", "full_load_all"}:
                    call_ok = False
                    for call in ast.walk(tree):
                        if isinstance(call, ast.Call) and call.func is node:
                            kw = {k.arg: k.value for k in call.keywords}
                            loader = kw.get("Loader")
                            call_ok = (node.attr in {"load", "load_all"}
                                       and isinstance(loader, ast.Attribute)
                                       and loader.attr in {"SafeLoader", "CSafeLoader"})
                    if not call_ok:
                        problems.append(f"{where}: yaml.{node.attr} without a safe Loader")
                if node.attr not in safe_calls | unsafe_names and node.attr[0].islower() \
                        and node.attr.endswith("load"):
                    problems.append(f"{where}: yaml.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                for alias in node.names:
                    if alias.name in unsafe_names or alias.name in {
                            "load", "unsafe_load", "full_load", "load_all"}:
                        problems.append(f"{where}: from yaml import {alias.name}")
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    if isinstance(base, ast.Attribute) and base.attr in unsafe_names:
                        problems.append(f"{where}: class {node.name}({base.attr})")
    assert problems == []
    from engine.manifest import yamlsrc

    loader = yamlsrc._Loader
    assert issubclass(loader, yaml.constructor.SafeConstructor)
    assert not issubclass(loader, yaml.constructor.FullConstructor), loader.__mro__


# ---------------------------------------------------------------- unbounded work (child process)

CHILD = r"""
import asyncio, json, os, resource, sys, time
spec = json.loads(sys.argv[1])
import httpx
from engine import AiClient, EngineError
from engine.validate import validate_paths

def vm_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0

# A memory ceiling: a value that grows without bound fails here as MemoryError
# (which the parent then reports as a bug) instead of exhausting the machine.
ceiling = vm_bytes() + spec["headroom"]
resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
out = {"requests": []}
t = time.process_time()
try:
    out["problems"] = validate_paths([spec["file"]])[1]
except BaseException as exc:
    out["validate_exc"] = f"{type(exc).__name__}: {exc}"[:500]
out["validate_s"] = time.process_time() - t

def handler(request):
    out["requests"].append(str(request.url))
    answer = spec["answer"]
    return httpx.Response(answer["status"], json=answer["json"])

async def load():
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = await AiClient.create(spec["model"], api_key="sk-child", http_client=http,
                                       max_retries=0)
        resp = await client.chat().user(spec["user"]).execute()
        out["content_len"] = len(resp.content)

t = time.process_time()
try:
    asyncio.run(load())
except EngineError as exc:
    out["error"] = {"kind": exc.kind, "type": type(exc).__name__, "text": str(exc)[:600]}
except BaseException as exc:
    out["load_exc"] = f"{type(exc).__name__}: {exc}"[:500]
out["load_s"] = time.process_time() - t
print("RESULT " + json.dumps(out), flush=True)
"""

OK_ANSWER = {"status": 200, "json": ANSWER}
# Each value just under the engine's per-value limit, repeated until ~1 GiB in total.
N = getattr(engine_templates, "MAX_VALUE_SIZE", 1_000_000) - 1
K = (1 << 30) // N + 1
BIG = f"'a' * {N}"


def _body(expr: str) -> dict[str, str]:
    return {"evil.yaml": manifest(body={"x": expr})}


def _many_keys(count: int) -> dict[str, str]:
    return {"evil.yaml": manifest(body={f"k{i}": f"{{{{ {BIG} }}}}" for i in range(count)})}


def _nested_each() -> dict[str, str]:
    doc = yaml.safe_load(manifest())
    inner = {"$each": "{{ range(100000) | list }}", "as": "b", "do": "{{ a }}"}
    doc["chat"]["body"]["x"] = {"$each": "{{ range(100000) | list }}", "as": "a", "do": inner}
    return {"evil.yaml": yaml.safe_dump(doc, sort_keys=False)}


def _each_of_big() -> dict[str, str]:
    doc = yaml.safe_load(manifest())
    doc["chat"]["body"]["x"] = {"$each": f"{{{{ [0] * {N} }}}}", "as": "a",
                                "do": f"{{{{ {BIG} }}}}"}
    return {"evil.yaml": yaml.safe_dump(doc, sort_keys=False)}


def _each_aliased() -> dict[str, str]:
    doc = yaml.safe_load(manifest())
    doc["chat"]["body"]["x"] = {"$each": f"{{{{ [{BIG}] * {N} }}}}", "as": "a",
                                "do": "{{ a }}"}
    return {"evil.yaml": yaml.safe_dump(doc, sort_keys=False)}


def _regex(where: str, pattern: str) -> dict[str, str]:
    doc = yaml.safe_load(manifest())
    if where == "rule":
        doc["errors"] = {"message": "error.message",
                         "rules": [{"message_matches": pattern, "kind": "rate_limited"}]}
    elif where == "retry_after":
        doc["errors"] = {"message": "error.message",
                         "retry_after": [{"message_matches": pattern}]}
    else:  # an override regex against an attacker-chosen catalogue model name
        doc["models"] = {"a" * 64 + "!": {"context_window": 10}}
        doc["chat"]["overrides"] = [{"match": pattern, "body": {"x": 1}}]
    return {"evil.yaml": yaml.safe_dump(doc, sort_keys=False)}


EVIL_MESSAGE = {"status": 400, "json": {"error": {"message": "a" * 64 + "!"}}}
EVIL_429 = {"status": 429, "json": {"error": {"message": "a" * 64 + "!"}}}
LATENT = ("{{ messages[-1].content.center(10**9) if messages[-1].content == 'boom' "
          "else 'fine' }}")

# name -> (files, user message, answer)
CHILD_CASES: dict[str, tuple[dict[str, str], str, dict[str, Any]]] = {
    "str_times_1e9": (_body("{{ 'a' * 10**9 }}"), "hi", OK_ANSWER),
    "nested_times_1000": (_body("{{ 'a' * 1000 * 1000 * 1000 }}"), "hi", OK_ANSWER),
    "nested_list_times_1000": (_body("{{ [[[0] * 1000] * 1000] * 1000 }}"), "hi", OK_ANSWER),
    "nested_list_times_limit": (_body(f"{{{{ [[0] * {N}] * {N} }}}}"), "hi", OK_ANSWER),
    "range_1e9_list": (_body("{{ range(10**9) | list }}"), "hi", OK_ANSWER),
    "range_join": (_body("{{ range(10**9) | join(',') }}"), "hi", OK_ANSWER),
    "percent_s_times_1e8": (_body("{{ '%s' * 10**8 }}"), "hi", OK_ANSWER),
    "list_times_1e8": (_body("{{ [0] * 10**8 }}"), "hi", OK_ANSWER),
    "tilde_chain": (_body("{{ " + " ~ ".join([f"({BIG})"] * K) + " }}"), "hi", OK_ANSWER),
    "join_of_aliased_list": (_body(f"{{{{ ([{BIG}] * {K}) | join }}}}"), "hi", OK_ANSWER),
    "join_with_huge_separator": (_body(f"{{{{ (['a'] * {N}) | join('b' * {N}) }}}}"), "hi",
                                 OK_ANSWER),
    "replace_expansion": (_body(f"{{{{ ({BIG}) | replace('a', {BIG}) }}}}"), "hi",
                          OK_ANSWER),
    "format_repeat": (_body(f"{{{{ ('%s' * {N // 2}) % (({BIG},) * {N // 2}) }}}}"), "hi",
                      OK_ANSWER),
    "center": (_body("{{ 'x'.center(10**9) }}"), "hi", OK_ANSWER),
    "ljust": (_body("{{ 'x'.ljust(10**9) }}"), "hi", OK_ANSWER),
    "rjust": (_body("{{ 'x'.rjust(10**9) }}"), "hi", OK_ANSWER),
    "zfill": (_body("{{ 'x'.zfill(10**9) }}"), "hi", OK_ANSWER),
    "expandtabs": (_body("{{ 'a\\tb'.expandtabs(10**9) }}"), "hi", OK_ANSWER),
    "format_width": (_body("{{ '{:>1000000000}'.format('x') }}"), "hi", OK_ANSWER),
    "format_nested_width": (_body("{{ '{0:{1}}'.format('x', 10**9) }}"), "hi", OK_ANSWER),
    "percent_width": (_body("{{ '%1000000000s' % 'x' }}"), "hi", OK_ANSWER),
    "percent_star_width": (_body("{{ '%*d' % (10**9, 1) }}"), "hi", OK_ANSWER),
    "center_filter": (_body("{{ 'x' | center(10**9) }}"), "hi", OK_ANSWER),
    "indent_filter": (_body("{{ 'x' | indent(10**9, true) }}"), "hi", OK_ANSWER),
    "many_maximal_values": (_many_keys(K), "hi", OK_ANSWER),
    # One maximal string referenced N times: cheap to build, huge once serialized.
    "aliased_list_returned": (_body(f"{{{{ [{BIG}] * {N} }}}}"), "hi", OK_ANSWER),
    "aliased_list_string": (_body(f"{{{{ ([{BIG}] * {N}) | string }}}}"), "hi", OK_ANSWER),
    "aliased_list_tojson": (_body(f"{{{{ ([{BIG}] * {N}) | tojson }}}}"), "hi", OK_ANSWER),
    "aliased_list_map_upper": (_body(f"{{{{ ([{BIG}] * {N}) | map('upper') | list }}}}"),
                               "hi", OK_ANSWER),
    "aliased_list_in_each": (_each_aliased(), "hi", OK_ANSWER),
    "nested_each_over_ranges": (_nested_each(), "hi", OK_ANSWER),
    "each_over_big_list": (_each_of_big(), "hi", OK_ANSWER),
    "deep_parentheses": (_body("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"), "hi",
                         OK_ANSWER),
    "deep_list_literal": (_body("{{ " + "[" * 5000 + "]" * 5000 + " }}"), "hi", OK_ANSWER),
    "long_plus_chain": (_body("{{ " + " + ".join(["1"] * 50000) + " }}"), "hi", OK_ANSWER),
    "long_not_chain": (_body("{{ " + "not " * 5000 + "1 }}"), "hi", OK_ANSWER),
    "latent_center_on_user_input": (_body(LATENT), "boom", OK_ANSWER),
    "regex_rule_nested_plus": (_regex("rule", "(a+)+$"), "hi", EVIL_MESSAGE),
    "regex_rule_doubly_grouped": (_regex("rule", "((a+))+$"), "hi", EVIL_MESSAGE),
    "regex_rule_overlapping_alternation": (_regex("rule", "(a|aa)+$"), "hi", EVIL_MESSAGE),
    "regex_rule_counted_repeat": (_regex("rule", "(.*a){12}$"), "hi", EVIL_MESSAGE),
    "regex_retry_after_nested_plus": (_regex("retry_after", "(a+)+$"), "hi", EVIL_429),
    "regex_retry_after_alternation": (_regex("retry_after", "(a|a)+$"), "hi", EVIL_429),
    "regex_override_nested_plus": (_regex("override", "(a+)+$"), "hi", OK_ANSWER),
    "regex_override_doubly_grouped": (_regex("override", "((a+))+$"), "hi", OK_ANSWER),
}
REGEX_RUNTIME = sorted(n for n in CHILD_CASES if n.startswith(("regex_rule", "regex_retry")))
REGEX_OVERRIDE = sorted(n for n in CHILD_CASES if n.startswith("regex_override"))
REFUSED_ON_LOAD = {name for name in CHILD_CASES
                   if not name.startswith(("regex_", "latent_"))}


def _run_child(directory: Path, name: str) -> dict[str, Any]:
    files, user, answer = CHILD_CASES[name]
    write_files(directory, files)
    spec = {"file": str(directory / "evil.yaml"), "model": "evil/m", "user": user,
            "answer": answer, "headroom": HEADROOM}
    return _spawn(directory, spec)


def _spawn(directory: Path, spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "AI_PROTOCOL_PATH": str(directory), ENV_NAME: ENV_SECRET,
           "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"hang": time.perf_counter() - started}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    return {"crash": f"rc={proc.returncode} stderr={proc.stderr[-1500:]}"}


@pytest.fixture(scope="module")
def child_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run every child case once, in parallel (each is bounded by CHILD_TIMEOUT)."""
    base = tmp_path_factory.mktemp("bombs")
    names = sorted(CHILD_CASES)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {name: pool.submit(_run_child, base / name, name) for name in names}
        sparse = pool.submit(_run_sparse, base / "sparse")
        results = {name: future.result() for name, future in futures.items()}
        results["sparse_huge_file"] = sparse.result()
    return results


def _run_sparse(directory: Path) -> dict[str, Any]:
    """A 2 GiB (sparse) manifest file: it must be refused by its size, without being read."""
    write_files(directory, {})
    path = directory / "evil.yaml"
    with open(path, "wb") as fh:
        fh.write(b"manifest: 1\nid: evil\n# ")
        fh.truncate(2 << 30)
    spec = {"file": str(path), "model": "evil/m", "user": "hi", "answer": OK_ANSWER,
            "headroom": HEADROOM}
    try:
        return _spawn(directory, spec)
    finally:
        path.unlink()


def _check_child(result: dict[str, Any], *, refused_on_load: bool) -> None:
    assert "hang" not in result, (
        f"did not finish within {CHILD_TIMEOUT}s (validation or the call hangs)")
    assert "crash" not in result, result.get("crash")
    assert "validate_exc" not in result, f"engine.validate raised {result['validate_exc']}"
    for line in result["problems"]:
        short = line[:300]
        assert "internal error" not in line, short
        assert "MemoryError" not in line, (
            f"the value was built without bound (MemoryError under a "
            f"{HEADROOM >> 20} MiB ceiling): {short}")
        assert "RecursionError" not in line, short
    assert result["validate_s"] < FAST, f"validation took {result['validate_s']:.2f}s"
    assert "load_exc" not in result, f"a non-EngineError escaped: {result['load_exc']}"
    assert result["load_s"] < FAST, f"the call took {result['load_s']:.2f}s"
    error = result.get("error")
    if refused_on_load:
        assert result["problems"], "engine.validate accepted the manifest"
        assert error is not None, "the manifest loaded and the call succeeded"
        assert error["kind"] == "invalid_request", error
        assert result["requests"] == [], "a hostile manifest reached the network"
    assert error is not None, "the call succeeded"
    assert "MemoryError" not in error["text"], (
        f"the value was built without bound (MemoryError under a {HEADROOM >> 20} MiB "
        f"ceiling): {error['text'][:300]}")
    assert "RecursionError" not in error["text"], error["text"][:300]


@pytest.mark.parametrize("name", sorted(REFUSED_ON_LOAD | {"sparse_huge_file"}))
def test_unbounded_templates_and_files_fail_fast(name, child_results):
    """Exponential/huge expansions: a validation problem and invalid_request in < 1 s."""
    _check_child(child_results[name], refused_on_load=True)


def test_a_latent_bomb_triggered_by_user_input_fails_fast(child_results):
    """A bomb the dry run cannot see must still fail fast at request time, nothing sent."""
    result = child_results["latent_center_on_user_input"]
    _check_child(result, refused_on_load=False)
    assert result["error"]["kind"] == "invalid_request"
    assert result["requests"] == []


@pytest.mark.parametrize("name", REGEX_RUNTIME)
def test_catastrophic_message_regex_does_not_hang(name, child_results):
    """A backtracking ``message_matches`` against an 'aaaa…!' provider message.

    Refusing the pattern at validation is fine; accepting it and then
    hanging while classifying the provider's error is not.
    """
    result = child_results[name]
    _check_child(result, refused_on_load=False)
    assert result["error"]["kind"] in {"invalid_request", "rate_limited"}


@pytest.mark.parametrize("name", REGEX_OVERRIDE)
def test_catastrophic_override_regex_against_catalogue_does_not_hang(name, child_results):
    """Validation matches override regexes against catalogue names: that must not hang either."""
    result = child_results[name]
    assert "hang" not in result, f"validation hangs (> {CHILD_TIMEOUT}s)"
    assert "crash" not in result, result.get("crash")
    assert "validate_exc" not in result
    assert result["validate_s"] < FAST and result["load_s"] < FAST


async def test_refusals_are_reported_with_file_and_line(tmp_path, monkeypatch):
    """The report names the manifest file and a line, like every other validation problem."""
    out = await run_case(tmp_path, monkeypatch,
                         {"evil.yaml": manifest(body={"x": "{{ api_key }}"})})
    assert_refused(out)
    assert any(line.startswith(str(tmp_path / "evil.yaml") + ":") for line in out.problems)


def test_child_harness_detects_a_benign_manifest(tmp_path):
    """Control for the child harness: a benign manifest validates, loads and is sent once."""
    write_files(tmp_path, {"evil.yaml": manifest()})
    spec = {"file": str(tmp_path / "evil.yaml"), "model": "evil/m", "user": "hi",
            "answer": OK_ANSWER, "headroom": HEADROOM}
    result = _spawn(tmp_path, spec)
    assert result.get("problems") == [] and "error" not in result, result
    assert len(result["requests"]) == 1 and result["content_len"] == 2
