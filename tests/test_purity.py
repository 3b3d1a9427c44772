"""Invariants of the code base: no provider knowledge in engine/, one httpx module,
a light import, an explicit public surface."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

import engine

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"

# Provider names, hosts, header and field names that belong in manifests only.
FORBIDDEN = [
    "openai", "anthropic", "claude", "gemini", "google", "deepseek", "mistral", "cohere",
    "ollama", "bedrock", "groq", "azure", "openrouter", "xai", "grok", "dashscope", "qwen",
    "zhipu", "moonshot", "fireworks", "together", "amazon", "aws",
    "x-api-key", "anthropic-version", "x-goog-api-key", "chat/completions", "generateContent",
    "api/chat", "choices", "candidates", "usageMetadata", "stop_reason",
    "prompt_tokens_details", "tool_use", "functionCall", "content_block", "x-should-retry",
    "retry-after-ms", "message_stop", "[DONE]",
]

# Public names fixed by the providers issue: the auth scheme of Signature Version 4
# signing, the extra that installs its signer and the algorithm id of its header. They
# name a signing standard the engine implements for any manifest; nothing else may.
ALLOWED_NAMES = ("aws-sigv4", "engine[aws]", "AWS4-HMAC-SHA256")


def _engine_sources() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py") if "_protocols" not in p.parts)


def _manifest_terms() -> set[str]:
    """Every provider id and header name that the shipped manifests use."""
    terms = set()
    for path in (ROOT / "protocols").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        terms.add(data["id"])
        terms.update(h.lower() for h in data.get("headers") or {})
        if (data.get("auth") or {}).get("header"):
            terms.add(data["auth"]["header"].lower())
    return terms


def test_no_provider_knowledge_in_engine():
    words = [re.escape(w) for w in FORBIDDEN]
    # A manifest's header name inside a longer hyphenated word (--api-key-env) is not it.
    headers = [re.escape(w) for w in sorted(_manifest_terms())]
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(words) + r")(?![A-Za-z])|"
                         r"(?<![A-Za-z-])(" + "|".join(headers) + r")(?![A-Za-z-])",
                         re.IGNORECASE)
    hits = []
    for path in _engine_sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for allowed in ALLOWED_NAMES:
                line = line.replace(allowed, "")
            for match in pattern.finditer(line):
                where = f"{path.relative_to(ROOT)}:{number}"
                hits.append(f"{where}: {match.group(0)!r}: {line.strip()}")
    assert hits == []


def test_only_transport_imports_httpx():
    importers = [p.name for p in _engine_sources()
                 if re.search(r"^\s*(import httpx|from httpx)", p.read_text(), re.MULTILINE)]
    assert importers == ["transport.py"]


def test_yaml_is_only_safe_loaded():
    for path in _engine_sources():
        text = path.read_text()
        assert "yaml.load(" not in text and "yaml.unsafe_load" not in text, path
        assert "FullLoader" not in text and "UnsafeLoader" not in text, path


def test_every_module_has_a_contract_docstring():
    for path in _engine_sources():
        first = path.read_text().lstrip()
        assert first.startswith('"""'), f"{path} has no module docstring"


def test_import_is_light_and_lazy():
    code = ("import sys, engine; heavy = [m for m in ('httpx', 'jinja2', 'jmespath', 'yaml', "
            "'cerberus') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_public_surface():
    assert set(engine.__all__) >= {"AiClient", "SyncAiClient", "Message", "EngineError",
                                   "ChatResponse", "Stats", "StreamEvent", "ToolCall", "Usage"}
    for name in engine.__all__:
        assert getattr(engine, name) is not None
    assert "AiClient" in dir(engine)
