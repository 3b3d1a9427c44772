"""Sourced credentials: a bearer token printed by a command (cached, fetched again
after an authentication error), and Signature Version 4 signing, verified here by an
independent implementation of the signature the server would compute."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import AiClient, EngineError, SyncAiClient
from engine.io.credentials import CommandToken
from engine.manifest.check import check_file

pytestmark = pytest.mark.fast

TOKEN = "ya29.token-from-the-command-0123456789"


def token_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "token.py"
    script.write_text(textwrap.dedent(body))
    return script


def token_manifest(tmp_path: Path, script: Path, lifetime: int = 3000) -> None:
    (tmp_path / "tok.yaml").write_text(textwrap.dedent(f"""\
        manifest: 1
        id: tok
        base_url: https://llm.tok.test/v1
        auth:
          scheme: bearer-token
          command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}]
          lifetime: {lifetime}
          env: [TOK_ACCESS_TOKEN]
        chat:
          path: /chat
          body: {{model: "{{{{ model }}}}"}}
          response: {{content: answer}}
        """))


@pytest.fixture
def counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token command that counts its runs in runs.txt."""
    runs = tmp_path / "runs.txt"
    script = token_script(tmp_path, f"""\
        with open({str(runs)!r}, "a") as f:
            f.write("run\\n")
        print("some banner line")
        print({TOKEN!r})
        """)
    token_manifest(tmp_path, script)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.delenv("TOK_ACCESS_TOKEN", raising=False)
    return runs


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


class Server:
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            return httpx.Response(status, json={"message": "token expired"})
        return httpx.Response(200, json={"answer": "ok"})


def sync_client(model: str, server: Server, **kw: Any) -> SyncAiClient:
    return SyncAiClient.create(model, max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(server)),
                               **kw)


def test_the_command_token_is_sent_and_reused(counting: Path) -> None:
    server = Server()
    client = sync_client("tok/m", server)
    assert runs(counting) == 0  # nothing runs at create
    client.chat().user("a").execute()
    client.chat().user("b").execute()
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {TOKEN}"] * 2
    assert runs(counting) == 1


def test_an_authentication_error_fetches_a_new_token_next_time(counting: Path) -> None:
    server = Server(401)
    client = sync_client("tok/m", server)
    with pytest.raises(EngineError) as caught:
        client.chat().user("a").execute()
    assert caught.value.kind == "authentication"
    client.chat().user("b").execute()
    assert runs(counting) == 2


def test_a_fixed_token_from_api_key_or_env_runs_no_command(
        counting: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server()
    sync_client("tok/m", server, api_key="fixed-token-123456789").chat().user("a").execute()
    monkeypatch.setenv("TOK_ACCESS_TOKEN", "env-token-123456789")
    sync_client("tok/m", server).chat().user("a").execute()
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer fixed-token-123456789", "Bearer env-token-123456789"]
    assert runs(counting) == 0


async def test_async_clients_fetch_the_token_in_a_worker_thread(counting: Path) -> None:
    server = Server()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        client = await AiClient.create("tok/m", http_client=http)
        await client.refresh_credentials()
        assert runs(counting) == 1
        await client.chat().user("a").execute()
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert runs(counting) == 1


@pytest.mark.parametrize("body, message", [
    ("import sys; sys.stderr.write('ERROR: not logged in'); sys.exit(3)",
     "failed (exit 3): ERROR: not logged in"),
    ("print('')", "printed no usable token"),
    ("print('two words')", "printed no usable token"),
])
def test_a_failing_command_is_an_authentication_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str) -> None:
    token_manifest(tmp_path, token_script(tmp_path, body))
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.delenv("TOK_ACCESS_TOKEN", raising=False)
    server = Server()
    with pytest.raises(EngineError) as caught:
        sync_client("tok/m", server).chat().user("a").execute()
    assert caught.value.kind == "authentication" and not caught.value.retryable
    assert message in caught.value.message and "token command" in caught.value.message
    assert server.requests == []


def test_a_missing_command_says_how_to_go_on() -> None:
    token = CommandToken(("/nonexistent/token-helper",), 3000, "tok")
    with pytest.raises(EngineError, match="'/nonexistent/token-helper' of tok was not found; "
                       "install it, or pass the token as api_key="):
        token.refresh()


def test_the_token_expires_after_its_lifetime(tmp_path: Path) -> None:
    script = token_script(tmp_path, f"print({TOKEN!r})")
    now = [100.0]
    token = CommandToken((sys.executable, str(script)), 60, "tok", clock=lambda: now[0])
    assert token.stale()
    token.refresh()
    assert token.key() == TOKEN and not token.stale()
    now[0] += 59.9
    assert not token.stale()
    now[0] += 0.2
    assert token.stale()
    assert TOKEN not in repr(token)


# ---------------------------------------------------------------- Signature V4

SIGNED = """\
manifest: 1
id: signed
base_url: "https://runtime.{{ settings.region }}.signed.test"
settings:
  region: {env: [SIGNED_REGION], required: true}
auth: {scheme: aws-sigv4, service: llmsvc, region: "{{ settings.region }}"}
chat:
  path: "/model/{{ model | path_segment }}/converse"
  body: {messages: "{{ messages | map(attribute='content') | list }}"}
  response: {content: answer}
"""

# The example credentials of the AWS documentation.
ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION = "FQoGZXIvYXdzEXAMPLE"


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(request: httpx.Request, secret: str, region: str,
                       service: str) -> tuple[str, str]:
    """The signature a verifier computes from what it received (AWS SigV4 spec:
    canonical request, string to sign, derived key), and the signed header list."""
    auth = request.headers["authorization"]
    fields = dict(part.strip().split("=", 1) for part in auth.split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    stamp = request.headers["x-amz-date"]
    canonical_headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed)
    query = "&".join(sorted(request.url.query.decode().split("&"))) if request.url.query else ""
    # Services other than S3 encode the (already encoded) path once more.
    path = urllib.parse.quote(request.url.raw_path.decode().split("?")[0], safe="/~")
    canonical = "\n".join([request.method, path, query,
                           canonical_headers, ";".join(signed),
                           hashlib.sha256(request.content).hexdigest()])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret}".encode(), stamp[:8]), region), service),
                "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), fields["Signature"]


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "signed.yaml").write_text(SIGNED)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "SIGNED_REGION"):
        monkeypatch.delenv(name, raising=False)


def test_explicit_credentials_sign_the_request(signed: None) -> None:
    server = Server()
    client = sync_client("signed/vendor.model-v1:0", server, api_key=f"{ACCESS}:{SECRET}",
                         settings={"region": "eu-west-3"})
    assert client.chat().user("hi").execute().content == "ok"
    (sent,) = server.requests
    assert str(sent.url) == ("https://runtime.eu-west-3.signed.test/model/vendor.model-v1%3A0"
                             "/converse")
    assert json.loads(sent.content) == {"messages": ["hi"]}
    assert sent.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS}/{sent.headers['x-amz-date'][:8]}/eu-west-3/"
        f"llmsvc/aws4_request, SignedHeaders=")
    mine, theirs = expected_signature(sent, SECRET, "eu-west-3", "llmsvc")
    assert mine == theirs
    assert "x-amz-security-token" not in sent.headers


def test_the_credential_chain_and_a_session_token(signed: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    monkeypatch.setenv("SIGNED_REGION", "us-east-1")
    server = Server()
    sync_client("signed/m", server).chat().user("hi").execute()
    (sent,) = server.requests
    assert sent.headers["x-amz-security-token"] == SESSION
    assert "x-amz-security-token" in sent.headers["authorization"]
    mine, theirs = expected_signature(sent, SECRET, "us-east-1", "llmsvc")
    assert mine == theirs


def test_secrets_never_reach_an_error(signed: None) -> None:
    server = Server(403)
    client = sync_client("signed/m", server, api_key=f"{ACCESS}:{SECRET}:{SESSION}",
                         settings={"region": "us-east-1"})
    with pytest.raises(EngineError) as caught:
        client.chat().user("hi").execute()
    text = str(caught.value) + repr(caught.value) + repr(client)
    assert SECRET not in text and SESSION not in text


@pytest.mark.parametrize("key", ["only-one-part", ":secret", "id:"])
def test_a_malformed_explicit_credential_is_refused(signed: None, key: str) -> None:
    with pytest.raises(EngineError, match="must be 'ACCESS_KEY_ID:SECRET_ACCESS_KEY'"):
        sync_client("signed/m", Server(), api_key=key, settings={"region": "us-east-1"})


def test_a_missing_region_names_the_setting(signed: None) -> None:
    with pytest.raises(EngineError, match=r"signed needs the setting 'region'.*SIGNED_REGION"):
        sync_client("signed/m", Server(), api_key=f"{ACCESS}:{SECRET}")


def test_without_botocore_the_error_names_the_extra(signed: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(EngineError) as caught:
        sync_client("signed/m", Server(), api_key=f"{ACCESS}:{SECRET}",
                    settings={"region": "us-east-1"})
    assert caught.value.kind == "invalid_request"
    assert "pip install 'engine[aws]'" in caught.value.message


# ---------------------------------------------------------------- the validator

@pytest.mark.parametrize("auth, problem", [
    ("{scheme: bearer-token}", "scheme 'bearer-token' needs auth.command or auth.credentials"),
    ("{scheme: aws-sigv4, service: x}", "scheme 'aws-sigv4' needs auth.region"),
    ("{scheme: bearer, env: [K], command: [x]}", "auth.command: not used by scheme 'bearer'"),
    ("{scheme: aws-sigv4, service: x, region: '{{ settings.regoin }}'}", "regoin"),
    ("{scheme: bearer-token, command: [x], lifetime: 5}", "min value is 60"),
])
def test_the_validator_checks_the_sourced_schemes(tmp_path: Path, auth: str,
                                                  problem: str) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(SIGNED.replace("id: signed", "id: v").replace(
        'auth: {scheme: aws-sigv4, service: llmsvc, region: "{{ settings.region }}"}',
        f"auth: {auth}"))
    found = check_file(path, dirs=[tmp_path]).problems
    assert any(problem in p for p in found), found


# ---------------------------------------------------------------- application-default

ADC_MANIFEST = """\
manifest: 1
id: adc
base_url: https://llm.adc.test/v1
auth:
  scheme: bearer-token
  credentials: application-default
  library: google.auth
  extra: google
  scopes: [https://scopes.adc.test/cloud]
chat:
  path: /chat
  body: {model: "{{ model }}"}
  response: {content: answer}
"""


@pytest.fixture
def token_endpoint() -> Any:
    """A local OAuth token endpoint (the JWT-bearer grant of a service account)."""
    import http.server
    import threading
    import urllib.parse as up

    seen: list[dict[str, list[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            seen.append(up.parse_qs(self.rfile.read(length).decode()))
            body = json.dumps({"access_token": f"ya29.local-{len(seen)}-0123456789",
                               "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token", seen
    server.shutdown()


@pytest.fixture
def adc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_endpoint: Any) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    url, seen = token_endpoint
    account = {"type": "service_account", "project_id": "p", "private_key_id": "k1",
               "private_key": pem, "client_email": "engine-test@p.iam.example",
               "client_id": "1", "token_uri": url}
    path = tmp_path / "account.json"
    path.write_text(json.dumps(account))
    (tmp_path / "adc.yaml").write_text(ADC_MANIFEST)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return seen


def test_application_default_credentials_give_the_token(adc: Any) -> None:
    server = Server()
    client = sync_client("adc/m", server)
    client.chat().user("a").execute()
    client.chat().user("b").execute()
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer ya29.local-1-0123456789"] * 2
    assert len(adc) == 1  # one token request, reused until it nears its expiry
    assert adc[0]["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


def test_an_authentication_error_refreshes_the_application_default_token(adc: Any) -> None:
    server = Server(401)
    client = sync_client("adc/m", server)
    with pytest.raises(EngineError):
        client.chat().user("a").execute()
    client.chat().user("b").execute()
    assert server.requests[-1].headers["authorization"] == "Bearer ya29.local-2-0123456789"


def test_missing_application_default_credentials_are_an_authentication_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adc.yaml").write_text(ADC_MANIFEST)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    server = Server()
    with pytest.raises(EngineError) as caught:
        sync_client("adc/m", server).chat().user("a").execute()
    assert caught.value.kind == "authentication"
    assert "application-default credentials of adc gave no token" in caught.value.message
    assert server.requests == []


def test_without_the_library_the_error_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adc.yaml").write_text(ADC_MANIFEST)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(EngineError, match=r"pip install 'engine\[google\]'"):
        sync_client("adc/m", Server())
