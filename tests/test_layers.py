"""The layer contract of engine/, enforced on the imports themselves.

Layers, from the top: the public surface (client, CLI) -> I/O (transport,
drivers) -> protocol (render, framing, rules, accumulate, decode, classify,
plan) -> the manifest model and its compiled expressions -> types (errors,
data model, events, retry policy, clock). A module may import its own layer
and the layers below it, never above. Loading manifests (files, schema,
checking, compiling) is a side branch used at client creation and by the
validator; nothing on the call path imports it. Every import counts,
including those inside functions and under ``TYPE_CHECKING``.

Third-party packages are pinned to the layer that owns them: httpx to the
I/O layer only, cerberus to the checker, yaml to the YAML reader.

On top of everything sit the tools (``engine.conformance``: the fixture
runner, its loopback server, the recorder, the scaffold, the demo). They are
built on the public API, so they may import any of engine, the package root
included, plus yaml and cerberus for their own data; never httpx (the
recorder's capture lives in the I/O layer). Nothing else imports them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

TYPES = {"engine.errors", "engine.types", "engine.parts", "engine.events", "engine.retry",
         "engine.clock",
         "engine.inputs", "engine.limits", "engine.hooks", "engine.logsetup"}
MODEL = {"engine.manifest.model", "engine.manifest.merge", "engine.manifest.paths",
         "engine.manifest.patterns", "engine.manifest.templates", "engine.manifest"}
LOADING = {"engine.manifest.locate", "engine.manifest.source", "engine.manifest.yamlsrc",
           "engine.manifest.schema", "engine.manifest.compile", "engine.manifest.check",
           "engine.manifest.load", "engine.manifest.editor_schema",
           "engine.manifest.operations"}
PROTOCOL_PREFIX = "engine.protocol"
IO_PREFIX = "engine.io"
TOP = {"engine", "engine.client", "engine.validate", "engine.otel"}
TOOLS_PREFIX = "engine.conformance"
# The command line sits with the tools: its `conformance` command runs engine.conformance.
COMMAND_LINE = {"engine.cli", "engine.__main__"}


def layer(module: str) -> str:
    if module in TYPES:
        return "types"
    if module in MODEL:
        return "model"
    if module in LOADING:
        return "loading"
    if module == PROTOCOL_PREFIX or module.startswith(PROTOCOL_PREFIX + "."):
        return "protocol"
    if module == IO_PREFIX or module.startswith(IO_PREFIX + "."):
        return "io"
    if module in TOP:
        return "top"
    if module == TOOLS_PREFIX or module.startswith(TOOLS_PREFIX + ".") or module in COMMAND_LINE:
        return "tools"
    raise AssertionError(f"{module} belongs to no layer: add it to tests/test_layers.py")


# What each layer may import from engine/.
ALLOWED = {
    "types": {"types"},
    "model": {"types", "model"},
    "protocol": {"types", "model", "protocol"},
    "io": {"types", "model", "protocol", "io"},
    # Loading checks a manifest by rendering sample requests (protocol.render) and reads
    # registry names (auth schemes, framers) from the protocol layer.
    "loading": {"types", "model", "loading", "protocol"},
    "top": {"types", "model", "loading", "protocol", "io", "top"},
    "tools": {"types", "model", "loading", "protocol", "io", "top", "tools"},
}
# Which engine modules may import a third-party package (any other may not).
OWNERS = {
    "httpx": {"engine.io.transport"},
    "httpcore": set(),
    "cerberus": {"engine.manifest.check"},
    "yaml": {"engine.manifest.yamlsrc"},
    "jinja2": {"engine.manifest.templates"},
    "jmespath": {"engine.manifest.paths"},
    "regex": {"engine.manifest.patterns"},
    "opentelemetry": {"engine.otel"},
    # the optional transport (engine[aiohttp]); yarl is aiohttp's URL type
    "aiohttp": {"engine.io.aiohttp"},
    "yarl": {"engine.io.aiohttp"},
}
# Third-party packages the tools layer may use besides (fixtures and demo data are YAML,
# checked with a cerberus schema).
TOOLS_MAY_USE = {"yaml", "cerberus"}
# protocol.render may be imported by loading; nothing else of the protocol layer is.
LOADING_MAY_IMPORT = {"engine.protocol.render", "engine.protocol.auth", "engine.protocol.framing",
                      "engine.protocol.classify", "engine.protocol.settings"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module *path* imports (absolute names), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # "from . import x" / "from .pkg import mod": the submodules count; the
            # package itself only when a name is not a submodule.
            modules = [f"{target}.{alias.name}" for alias in node.names]
            modules = [m for m in modules
                       if (ENGINE.parent / (m.replace(".", "/") + ".py")).exists()]
            if node.module or len(modules) < len(node.names):
                found.append((node.lineno, target))
            found += [(node.lineno, m) for m in modules]
    return found


SOURCES = sorted(ENGINE.rglob("*.py"))


@pytest.mark.fast
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_imports_respect_the_layers(path: Path) -> None:
    here = module_name(path)
    mine = layer(here)
    problems = []
    for line, target in imports_of(path):
        top = target.split(".")[0]
        if top == "engine":
            if target == "engine" and here != "engine" and mine != "tools":
                problems.append(f"{line}: imports the package root")
                continue
            theirs = layer(target)
            if theirs not in ALLOWED[mine]:
                problems.append(f"{line}: {mine} module imports {target} ({theirs})")
            if mine == "loading" and theirs == "protocol" and target not in LOADING_MAY_IMPORT:
                problems.append(f"{line}: loading may use only {sorted(LOADING_MAY_IMPORT)}")
        elif top in OWNERS and here not in OWNERS[top] and not (
                mine == "tools" and top in TOOLS_MAY_USE):
            problems.append(f"{line}: imports {top}, which only {sorted(OWNERS[top])} may")
    assert problems == [], f"{path.relative_to(ENGINE)}:\n" + "\n".join(problems)


@pytest.mark.fast
def test_every_module_is_in_a_layer() -> None:
    for path in SOURCES:
        layer(module_name(path))


@pytest.mark.fast
def test_the_tools_sit_on_top_and_own_no_http_stack() -> None:
    tools = {module_name(p) for p in SOURCES if layer(module_name(p)) == "tools"}
    assert {"engine.conformance.runner", "engine.conformance.server",
            "engine.conformance.record", "engine.conformance.demo"} <= tools
    assert [name for name, allowed in ALLOWED.items() if "tools" in allowed] == ["tools"]
    assert not any(tools & owners for owners in OWNERS.values())
    assert "httpx" not in TOOLS_MAY_USE and "httpcore" not in TOOLS_MAY_USE


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})},
                         cwd=ENGINE.parent)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = {"cerberus", "yaml", "engine.manifest.check", "engine.validate", "engine.manifest.schema",
         "engine.manifest.source", "engine.manifest.yamlsrc"}


def test_importing_the_client_loads_no_validation_machinery() -> None:
    loaded = _modules_after("from engine import AiClient, SyncAiClient")
    assert not (HEAVY & loaded), sorted(HEAVY & loaded)


def test_a_call_with_a_checked_manifest_loads_no_validation_machinery(tmp_path: Path) -> None:
    """Once a manifest's content was checked, create + call compile it from the cache."""
    call = (
        "import httpx\n"
        "from engine import SyncAiClient\n"
        "body = {'choices': [{'message': {'content': 'hi'}, 'finish_reason': 'stop'}]}\n"
        "http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, "
        "json=body)))\n"
        "c = SyncAiClient.create('openai/gpt-4o', api_key='sk-test', http_client=http)\n"
        "assert c.chat().user('hi').execute().content == 'hi'\n"
    )
    env = {"ENGINE_CACHE_DIR": str(tmp_path)}
    first = _modules_after(call, env)
    assert "cerberus" in first  # the first sight of this content is checked in full
    assert list(tmp_path.glob("*.json")), "nothing was cached"
    again = _modules_after(call, env)
    assert not (HEAVY & again), sorted(HEAVY & again)


def test_a_changed_manifest_is_checked_again(tmp_path: Path) -> None:
    """The cache is keyed by content: an edit (here, one that breaks it) is never trusted."""
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    source = (ENGINE.parent / "protocols" / "openai.yaml").read_text()
    (protocols / "mine.yaml").write_text(source.replace("id: openai", "id: mine"))
    code = ("from engine.manifest import load_manifest\n"
            "print(load_manifest('mine').id)\n")
    env = {"ENGINE_CACHE_DIR": str(tmp_path / "cache"), "AI_PROTOCOL_PATH": str(protocols)}
    assert "cerberus" in _modules_after(code, env)
    assert "cerberus" not in _modules_after(code, env)
    (protocols / "mine.yaml").write_text(
        source.replace("id: openai", "id: mine").replace("base_url:", "bogus_key: 1\nbase_url:"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, cwd=ENGINE.parent)
    assert out.returncode != 0 and "bogus_key: unknown field" in out.stderr, out.stderr


SYNC_CALL_AND_STREAM = """\
import json, httpx
from engine import SyncAiClient
SSE = b'data: {"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]}\\n\\n' \\
      b'data: [DONE]\\n\\n'
def answer(request):
    if json.loads(request.content).get('stream'):
        return httpx.Response(200, headers={'content-type': 'text/event-stream'}, content=SSE)
    return httpx.Response(200, json={'choices': [{'message': {'content': 'hi'},
                                                  'finish_reason': 'stop'}]})
http = httpx.Client(transport=httpx.MockTransport(answer))
c = SyncAiClient.create('openai/gpt-4o', api_key='sk-test', http_client=http)
assert c.chat().user('hi').execute().content == 'hi'
with c.chat().user('hi').stream() as s:
    list(s)
assert s.response.content == 'hi'
"""


def test_a_sync_call_loads_no_asyncio(tmp_path: Path) -> None:
    """asyncio costs a cold process about 10 ms; a sync client has no use for it."""
    loaded = _modules_after(SYNC_CALL_AND_STREAM, {"ENGINE_CACHE_DIR": str(tmp_path)})
    assert "asyncio" not in loaded
