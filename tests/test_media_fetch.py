"""URL parts downloaded for providers that take bytes only (``capabilities.parts: fetch``),
``data:`` URLs as bytes, and the per-provider limits of ``capabilities.part_limits``.

The exact requests are asserted over ``httpx.MockTransport`` (what was fetched,
with which headers, and the provider body), and once over a real server on
127.0.0.1 through both the sync and the async client."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import AiClient, EngineError, Part, SyncAiClient
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse
from engine.manifest.check import check

pytestmark = pytest.mark.fast

KEY = "sk-fetch-test-key-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\n"
OLLAMA_ANSWER = {"message": {"role": "assistant", "content": "a cat"}, "done": True,
                 "done_reason": "stop"}


class Web:
    """The media hosts and the provider, as one MockTransport handler."""

    def __init__(self, media: dict[str, httpx.Response], answer: Any = None) -> None:
        self.media = media
        self.answer = answer if answer is not None else OLLAMA_ANSWER
        self.fetched: list[httpx.Request] = []
        self.sent: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url in self.media:
            self.fetched.append(request)
            return self.media[url]
        if request.url.host.endswith(".test"):
            self.fetched.append(request)
            raise httpx.ConnectError("no such host", request=request)
        self.sent.append(json.loads(request.content))
        return httpx.Response(200, json=self.answer)


def sync(model: str, web: Web) -> SyncAiClient:
    return SyncAiClient.create(model, api_key=KEY, max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(web)))


def png(**headers: str) -> httpx.Response:
    return httpx.Response(200, content=PNG, headers={"content-type": "image/png", **headers})


def ask(client: SyncAiClient, part: Part) -> Any:
    return client.chat().user(["What is this?", part]).execute()


def test_a_url_image_goes_to_a_bytes_only_provider_as_base64() -> None:
    web = Web({"https://img.test/cat.png": png()})
    answer = ask(sync("ollama/llava", web), Part.image(url="https://img.test/cat.png"))
    assert answer.content == "a cat"
    assert web.sent == [{"model": "llava", "stream": False, "messages": [
        {"role": "user", "content": "What is this?",
         "images": [base64.b64encode(PNG).decode()]}]}]
    (got,) = web.fetched
    assert got.method == "GET"
    assert dict(got.headers)["accept"] == "image/*"
    assert "authorization" not in got.headers


def test_no_provider_credential_goes_with_a_download() -> None:
    web = Web({"https://files.test/q3.pdf": httpx.Response(
        200, content=PDF, headers={"content-type": "application/pdf"})},
        answer={"choices": [{"message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}]})
    ask(sync("openai/gpt-4o", web), Part.document(url="https://files.test/q3.pdf", name="q3.pdf"))
    (got,) = web.fetched
    assert KEY not in json.dumps(dict(got.headers))
    (part,) = [p for p in web.sent[0]["messages"][0]["content"] if p["type"] == "file"]
    assert part == {"type": "file", "file": {
        "filename": "q3.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()}}


def test_a_provider_that_takes_urls_gets_the_url_and_nothing_is_downloaded() -> None:
    web = Web({}, answer={"content": [{"type": "text", "text": "a cat"}],
                          "stop_reason": "end_turn"})
    ask(sync("anthropic/claude", web), Part.image(url="https://img.test/cat.png"))
    assert web.fetched == []
    image = web.sent[0]["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "url", "url": "https://img.test/cat.png"}}


def test_redirects_are_followed_and_userinfo_stays_on_its_origin() -> None:
    web = Web({
        "https://u:p@img.test/a?sig=1": httpx.Response(302, headers={"location": "/b"}),
        "https://u:p@img.test/b": httpx.Response(
            301, headers={"location": "https://u:p@cdn.test/c"}),
        "https://cdn.test/c": png(),
    })
    ask(sync("ollama/llava", web), Part.image(url="https://u:p@img.test/a?sig=1"))
    auth = [r.headers.get("authorization") for r in web.fetched]
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    assert [str(r.url) for r in web.fetched] == [
        "https://u:p@img.test/a?sig=1", "https://u:p@img.test/b", "https://cdn.test/c"]
    assert auth == [basic, basic, None]
    assert len(web.sent) == 1


def test_too_many_redirects_is_an_error_and_nothing_reaches_the_provider() -> None:
    loop = {f"https://img.test/{i}": httpx.Response(302, headers={"location": f"/{i + 1}"})
            for i in range(10)}
    web = Web(loop)
    with pytest.raises(EngineError) as caught:
        ask(sync("ollama/llava", web), Part.image(url="https://img.test/0"))
    assert caught.value.kind == "invalid_request"
    assert "more than 5 redirects" in caught.value.message
    assert len(web.fetched) == 6 and web.sent == []


@pytest.mark.parametrize(("response", "wanted"), [
    (httpx.Response(404, text="gone"), "failed: HTTP 404"),
    (httpx.Response(302), "a redirect without a Location"),
    (httpx.Response(302, headers={"location": "ftp://img.test/x"}), "redirected to a ftp URL"),
    (httpx.Response(200, content=b"<html>", headers={"content-type": "text/html"}),
     "came back as text/html, not one of the image media types"),
    (httpx.Response(200, content=b"GIF89a" + bytes(10)), "image/gif"),
])
def test_a_download_that_is_not_an_image_is_refused_before_sending(
        response: httpx.Response, wanted: str) -> None:
    web = Web({"https://img.test/x?token=SECRET": response})
    if wanted == "image/gif":  # no Content-Type: the bytes' signature names the type
        ask(sync("ollama/llava", web), Part.image(url="https://img.test/x?token=SECRET"))
        assert web.sent[0]["messages"][0]["images"] == [base64.b64encode(
            b"GIF89a" + bytes(10)).decode()]
        return
    with pytest.raises(EngineError) as caught:
        ask(sync("ollama/llava", web), Part.image(url="https://img.test/x?token=SECRET"))
    assert caught.value.kind == "invalid_request"
    assert wanted in caught.value.message
    assert "https://img.test/x" in caught.value.message
    assert "SECRET" not in str(caught.value)
    assert web.sent == []


def test_the_declared_media_type_serves_when_the_answer_names_none() -> None:
    web = Web({"https://img.test/raw": httpx.Response(200, content=b"\x00\x01raw-heic")})
    ask(sync("ollama/llava", web), Part.image(url="https://img.test/raw", media_type="image/heic"))
    assert len(web.sent) == 1


def test_a_connection_failure_keeps_its_kind_and_names_the_part() -> None:
    web = Web({})
    with pytest.raises(EngineError) as caught:
        ask(sync("ollama/llava", web), Part.image(url="https://down.test/cat.png"))
    assert caught.value.kind == "connection"
    assert caught.value.message.startswith(
        "downloading the image part at https://down.test/cat.png failed:")
    assert caught.value.retryable is False
    assert len(web.fetched) == 1 and web.sent == []


def test_a_gs_url_cannot_be_downloaded() -> None:
    with pytest.raises(EngineError) as caught:
        ask(sync("ollama/llava", Web({})), Part.image(url="gs://bucket/cat.png"))
    assert caught.value.kind == "invalid_request"
    assert "only http(s) URLs can be downloaded" in caught.value.message


def test_other_refusals_come_before_any_download() -> None:
    web = Web({"https://img.test/cat.png": png()})
    chat = sync("ollama/llava", web).chat().user(["?", Part.image(url="https://img.test/cat.png")])
    with pytest.raises(EngineError, match="tool_choice"):
        chat.tools([{"name": "f", "parameters": {"type": "object"}}]).tool_choice(
            "required").execute()
    assert web.fetched == [] and web.sent == []


def test_a_data_url_is_bytes_for_every_provider() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    part = Part.image(url=url)
    assert (part.url, part.data, part.media_type) == (None, PNG, "image/png")
    web = Web({})
    ask(sync("ollama/llava", web), part)
    assert web.sent[0]["messages"][0]["images"] == [base64.b64encode(PNG).decode()]
    assert web.fetched == []
    with pytest.raises(EngineError, match="valid base64"):
        Part.image(url="data:image/png;base64,@@@@")


# ------------------------------------------------------------------ limits and chains

def write(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path, "smallimg", """\
        extends: ollama
        id: smallimg
        name: Ollama with a 64-byte image limit
        capabilities:
          parts: {image: [data, fetch]}
          part_limits: {image: {max_bytes: 64, media_types: [image/png, image/jpeg]}}
        """)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    return tmp_path


def test_a_download_over_the_provider_limit_stops_at_the_limit(small: Path) -> None:
    web = Web({"https://img.test/big.png": png()}, answer=OLLAMA_ANSWER)
    ask(sync("smallimg/llava", web), Part.image(url="https://img.test/big.png"))  # 48 bytes
    web = Web({"https://img.test/big.png": httpx.Response(
        200, content=PNG + bytes(100), headers={"content-type": "image/png"})})
    with pytest.raises(EngineError) as caught:
        ask(sync("smallimg/llava", web), Part.image(url="https://img.test/big.png"))
    assert caught.value.kind == "invalid_request"
    assert "larger than 64 bytes, the most the provider takes" in caught.value.message
    assert web.sent == []


def test_part_limits_refuse_bytes_by_size_and_media_type(small: Path) -> None:
    web = Web({})
    with pytest.raises(EngineError) as caught:
        ask(sync("smallimg/llava", web), Part.image(data=PNG + bytes(17), media_type="image/png"))
    assert caught.value.message == ("smallimg takes image parts of at most 64 bytes; "
                                    "this one has 65")
    with pytest.raises(EngineError) as caught:
        ask(sync("smallimg/llava", web), Part.image(data=b"GIF89a", media_type="image/gif"))
    assert caught.value.message == ("smallimg takes image parts as image/jpeg, image/png only, "
                                    "not image/gif")
    assert web.sent == []


def test_a_fallback_chain_downloads_once_and_each_provider_gets_its_form() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.host}")
        if request.url.host == "img.test":
            return png()
        if request.url.host == "api.anthropic.com":
            assert json.loads(request.content)["messages"][0]["content"][1]["source"] == {
                "type": "url", "url": "https://img.test/cat.png"}
            return httpx.Response(529, json={"type": "error", "error": {
                "type": "overloaded_error", "message": "Overloaded"}})
        body = json.loads(request.content)
        assert body["messages"][0]["images"] == [base64.b64encode(PNG).decode()]
        return httpx.Response(200, json=OLLAMA_ANSWER)

    client = SyncAiClient.create(["anthropic/claude", "ollama/llava"], api_key=KEY,
                                 max_retries=0,
                                 http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    answer = ask(client, Part.image(url="https://img.test/cat.png"))
    assert answer.content == "a cat"
    assert calls == ["GET img.test", "POST api.anthropic.com", "POST localhost"]


def test_the_manifest_check_rejects_fetch_beside_url_and_stray_limits(tmp_path: Path) -> None:
    write(tmp_path, "badfetch", """\
        extends: ollama
        id: badfetch
        name: Bad
        capabilities:
          parts: {image: [url, fetch], document: [fetch]}
          part_limits: {audio: {max_bytes: 10}, image: {media_types: [image/bmp]}}
        """)
    problems = "\n".join(check(tmp_path / "badfetch.yaml"))
    assert "capabilities.parts.image: fetch sends a downloaded URL as data: it needs data " \
           "and excludes url" in problems
    assert "capabilities.parts.document: fetch sends" in problems
    assert "capabilities.part_limits.audio: limits for audio parts, which " \
           "capabilities.parts does not take" in problems
    assert "not image media types the engine knows: image/bmp" in problems


# ------------------------------------------------------------------ a real server

def test_over_a_real_server_sync_and_async_and_streamed() -> None:
    stream = [json.dumps({"message": {"role": "assistant", "content": c}, "done": False})
              .encode() + b"\n" for c in ("a ", "cat")]
    stream.append(json.dumps({"message": {"role": "assistant", "content": ""}, "done": True,
                              "done_reason": "stop"}).encode() + b"\n")

    def handler(request: RecordedRequest) -> ScriptedResponse:
        if request.method == "GET":
            return ScriptedResponse(200, [("Content-Type", "image/png")], [PNG])
        images = request.json()["messages"][0]["images"]
        assert images == [base64.b64encode(PNG).decode()]
        if request.json()["stream"]:
            return ScriptedResponse(200, [("Content-Type", "application/x-ndjson")], stream)
        return ScriptedResponse.json(OLLAMA_ANSWER)

    with ReplayServer(handler) as server:
        part = Part.image(url=f"{server.url}/media/cat.png")
        client = SyncAiClient.create("ollama/llava", base_url=server.url, max_retries=0)
        assert client.chat().user(["?", part]).execute().content == "a cat"
        with client.chat().user(["?", part]).stream() as events:
            text = "".join(e.as_content_delta.text for e in events if e.is_content_delta)
        assert text == "a cat"

        async def main() -> str:
            aclient = await AiClient.create("ollama/llava", base_url=server.url)
            try:
                return (await aclient.chat().user(["?", part]).execute()).content
            finally:
                await aclient.aclose()

        assert asyncio.run(main()) == "a cat"
        methods = [(r.method, r.url_path) for r in server.requests]
        assert methods == [("GET", "/media/cat.png"), ("POST", "/api/chat")] * 3
        assert all(r.header("authorization") is None for r in server.requests)
