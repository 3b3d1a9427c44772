"""Client settings: a manifest declares them, ``create(settings=...)`` or their
environment variables supply them, templates (the base URL too) read them, and
every problem is an ``invalid_request`` raised before anything is sent."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import AiClient, EngineError, SyncAiClient
from engine.manifest.check import check_file

pytestmark = pytest.mark.fast

MANIFEST = """\
manifest: 1
id: acme
base_url: "https://{{ settings.resource }}.acme.test/deployments/\\
  {{ settings.deployment | path_segment }}"
auth: {scheme: header, header: api-key, env: [ACME_KEY]}
settings:
  resource:
    env: [ACME_RESOURCE]
    required: true
    pattern: "[a-z0-9][a-z0-9-]{1,62}"
    description: the resource name
  deployment: {env: [ACME_DEPLOYMENT, ACME_DEPLOYMENT_OLD], required: true,
               pattern: "[a-z0-9 ._-]+"}
  api_version: {env: [ACME_API_VERSION], default: "2024-10-21"}
  tier: {}
chat:
  path: /chat
  query: {api-version: "{{ settings.api_version }}"}
  body:
    messages: "{{ messages | map(attribute='content') | list }}"
    tier: "{{ settings.tier }}"
  response: {content: answer}
"""

KEY = "acme-test-key-0123456789"


@pytest.fixture
def protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "acme.yaml").write_text(MANIFEST)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    for name in ("ACME_RESOURCE", "ACME_DEPLOYMENT", "ACME_DEPLOYMENT_OLD", "ACME_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"answer": "ok"})


def client(recorder: Recorder, **kw: Any) -> SyncAiClient:
    return SyncAiClient.create("acme/m1", api_key=KEY, max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(recorder)),
                               **kw)


def test_settings_fill_base_url_query_and_body(protocols: Path) -> None:
    rec = Recorder()
    c = client(rec, settings={"resource": "res-1", "deployment": "gpt 4o", "tier": "pro"})
    assert c.chat().user("hi").execute().content == "ok"
    (sent,) = rec.requests
    assert str(sent.url) == ("https://res-1.acme.test/deployments/gpt%204o/chat"
                             "?api-version=2024-10-21")
    assert sent.headers["api-key"] == KEY
    assert json.loads(sent.content) == {"messages": ["hi"], "tier": "pro"}


def test_environment_then_default_and_unset_optional_is_omitted(
        protocols: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_RESOURCE", "from-env")
    monkeypatch.setenv("ACME_DEPLOYMENT_OLD", "second-var")
    monkeypatch.setenv("ACME_API_VERSION", "2025-01-01")
    rec = Recorder()
    client(rec).chat().user("hi").execute()
    (sent,) = rec.requests
    assert str(sent.url) == ("https://from-env.acme.test/deployments/second-var/chat"
                             "?api-version=2025-01-01")
    assert json.loads(sent.content) == {"messages": ["hi"]}  # tier unset: not sent


def test_explicit_setting_wins_over_environment(protocols: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_RESOURCE", "from-env")
    rec = Recorder()
    client(rec, settings={"resource": "given", "deployment": "d"}).chat().user("x").execute()
    assert rec.requests[0].url.host == "given.acme.test"


def test_missing_required_setting_names_it_and_its_variables(protocols: Path) -> None:
    rec = Recorder()
    with pytest.raises(EngineError) as caught:
        client(rec, settings={"resource": "r1"})
    assert caught.value.kind == "invalid_request"
    assert caught.value.message == ("acme needs the setting 'deployment': pass "
                                    "settings={'deployment': ...} or set $ACME_DEPLOYMENT or "
                                    "$ACME_DEPLOYMENT_OLD")
    assert rec.requests == []


def test_unknown_setting_is_refused_with_a_suggestion(protocols: Path) -> None:
    with pytest.raises(EngineError, match=r"unknown setting 'resorce' for acme \(did you mean "
                       r"'resource'\?\); it declares: api_version, deployment, resource, tier"):
        client(Recorder(), settings={"resorce": "r", "deployment": "d"})


def test_a_manifest_without_settings_refuses_any(protocols: Path) -> None:
    with pytest.raises(EngineError, match=r"unknown setting 'region' for openai.*declares no "
                       r"settings"):
        SyncAiClient.create("openai/gpt-4o", api_key=KEY, settings={"region": "x"})


@pytest.mark.parametrize("value, why", [
    ("evil.example/#", "does not match acme's pattern"),
    ("UPPER", None),  # patterns are case-insensitive, so this one passes
    ("a" * 300, "1 to 256 characters"),
    ("", "1 to 256 characters"),
])
def test_pattern_guards_the_host(protocols: Path, value: str, why: str | None) -> None:
    rec = Recorder()
    if why is None:
        client(rec, settings={"resource": value, "deployment": "d"})
        return
    with pytest.raises(EngineError, match=why):
        client(rec, settings={"resource": value, "deployment": "d"})


@pytest.mark.parametrize("value", ["d/../x", "d?x=1", "d#f", "user@host", "a b", "é"])
def test_values_without_a_pattern_are_url_safe(protocols: Path, value: str) -> None:
    with pytest.raises(EngineError, match="is not allowed"):
        client(Recorder(), settings={"resource": "r1", "deployment": "d", "api_version": value})


def test_non_string_values_and_mappings_are_refused(protocols: Path) -> None:
    with pytest.raises(EngineError, match="must be a string, not int"):
        client(Recorder(), settings={"resource": "r1", "deployment": 7})
    with pytest.raises(EngineError, match="settings must be a mapping"):
        client(Recorder(), settings=["resource"])


async def test_async_client_takes_settings(protocols: Path) -> None:
    rec = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(rec)) as http:
        c = await AiClient.create("acme/m1", api_key=KEY, http_client=http,
                                  settings={"resource": "r1", "deployment": "d"})
        assert (await c.chat().user("x").execute()).content == "ok"
    assert rec.requests[0].url.host == "r1.acme.test"


def test_base_url_argument_replaces_the_template(protocols: Path) -> None:
    rec = Recorder()
    client(rec, base_url="https://proxy.test/x",
           settings={"resource": "r1", "deployment": "d"}).chat().user("x").execute()
    assert str(rec.requests[0].url) == "https://proxy.test/x/chat?api-version=2024-10-21"


# ---------------------------------------------------------------- the validator

def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "acme.yaml"
    path.write_text(textwrap.dedent(text))
    return check_file(path, dirs=[tmp_path]).problems


def test_validator_accepts_the_example(tmp_path: Path) -> None:
    assert problems(tmp_path, MANIFEST) == []


def test_validator_finds_an_undeclared_setting_in_a_template(tmp_path: Path) -> None:
    found = problems(tmp_path, MANIFEST.replace("settings.tier", "settings.teir"))
    assert len(found) == 1 and "chat.body.tier" in found[0] and "teir" in found[0]


def test_validator_finds_an_undeclared_setting_in_the_base_url(tmp_path: Path) -> None:
    found = problems(tmp_path, MANIFEST.replace("settings.resource }}", "settings.resorce }}"))
    assert len(found) == 1 and ":3: base_url" in found[0] and "resorce" in found[0]


@pytest.mark.parametrize("change, where, what", [
    ({"tier": {"pattern": "("}}, "settings.tier.pattern", "invalid regular expression"),
    ({"tier": {"pattern": "[0-9]+", "default": "x"}}, "settings.tier.default",
     "does not match"),
    ({"tier": {"required": True, "default": "x"}}, "settings.tier.required", "never missing"),
    ({"Tier": {}}, "settings", "Tier"),
    ({"tier": {"envs": ["X"]}}, "settings.tier", "envs"),
])
def test_validator_checks_each_setting(tmp_path: Path, change: dict[str, Any], where: str,
                                       what: str) -> None:
    import yaml
    data = yaml.safe_load(MANIFEST)
    del data["settings"]["tier"]
    data["chat"]["body"].pop("tier")
    data["settings"].update(change)
    found = problems(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert any(where in p and what in p for p in found), found


def test_a_child_with_its_own_host_inherits_no_settings(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    (tmp_path / "acme.yaml").write_text(MANIFEST)
    (tmp_path / "mirror.yaml").write_text(textwrap.dedent("""\
        manifest: 1
        id: mirror
        extends: acme
        base_url: https://mirror.test
        auth: {env: [MIRROR_KEY]}
        chat:
          query: null
          body: {tier: null}
        """))
    assert check_file(tmp_path / "mirror.yaml", dirs=[tmp_path]).problems == []
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    rec = Recorder()
    c = SyncAiClient.create("mirror/m", api_key=KEY,
                            http_client=httpx.Client(transport=httpx.MockTransport(rec)))
    c.chat().user("x").execute()
    assert str(rec.requests[0].url) == "https://mirror.test/chat"
