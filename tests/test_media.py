"""Message parts (images, documents, audio) and structured output: the exact body each
family receives, the checks before sending, and the decoded, validated answer."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import EngineError, Message, Part, SyncAiClient

pytestmark = pytest.mark.fast

KEY = "sk-media-test-key-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"
B64_PNG = base64.b64encode(PNG).decode()
B64_PDF = base64.b64encode(PDF).decode()

ANSWERS: dict[str, Any] = {
    "openai": {"choices": [{"message": {"role": "assistant", "content": '{"name": "Rex", '
                                        '"age": 3}'}, "finish_reason": "stop"}]},
    "anthropic": {"content": [{"type": "text", "text": '{"name": "Rex", "age": 3}'}],
                  "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 5}},
    "gemini": {"candidates": [{"content": {"role": "model", "parts": [
        {"text": '{"name": "Rex", "age": 3}'}]}, "finishReason": "STOP"}]},
    "ollama": {"message": {"role": "assistant", "content": '{"name": "Rex", "age": 3}'},
               "done": True, "done_reason": "stop"},
}
DOG = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
       "required": ["name", "age"], "additionalProperties": False}


class Server:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json=self.answer)


def client(provider: str, answer: Any = None, model: str = "m") -> tuple[SyncAiClient, Server]:
    server = Server(answer if answer is not None else ANSWERS[provider])
    http = httpx.Client(transport=httpx.MockTransport(server))
    return SyncAiClient.create(f"{provider}/{model}", api_key=KEY, http_client=http,
                               max_retries=0), server


def test_openai_parts() -> None:
    c, server = client("openai", model="gpt-4o-audio-preview")
    c.chat().user(["What is in these?", Part.image(url="https://example.test/cat.jpg"),
                   Part.image(data=PNG, media_type="image/png"),
                   Part.document(data=PDF, name="q3.pdf"),
                   Part.audio(data=b"RIFF0000WAVE", media_type="audio/wav")]).execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{B64_PNG}"}},
        {"type": "file", "file": {"filename": "q3.pdf",
                                  "file_data": f"data:application/pdf;base64,{B64_PDF}"}},
        {"type": "input_audio", "input_audio": {
            "data": base64.b64encode(b"RIFF0000WAVE").decode(), "format": "wav"}}]}]


@pytest.mark.parametrize("model, part, why", [
    ("gpt-4o", Part.audio(data=b"RIFF0000WAVE", media_type="audio/wav"),
     "openai cannot send an audio part given as data: it takes no audio parts "
     "(model gpt-4o: openai's capabilities differ by model)"),
    ("gpt-4o-mini-audio-preview", Part.audio(data=b"fLaC0000", media_type="audio/flac"),
     "openai takes audio parts as audio/mp3, audio/mpeg, audio/wav, audio/x-wav only, "
     "not audio/flac "
     "(model gpt-4o-mini-audio-preview: openai's capabilities differ by model)"),
])
def test_openai_audio_is_for_the_audio_models_in_wav_or_mp3(model: str, part: Part,
                                                            why: str) -> None:
    c, server = client("openai", model=model)
    with pytest.raises(EngineError) as caught:
        c.chat().user(["Transcribe.", part]).execute()
    assert caught.value.kind == "invalid_request" and caught.value.message == why
    assert server.bodies == []


def test_a_child_that_drops_a_model_rule_keeps_its_own_capabilities() -> None:
    # openai-responses removes openai's audio_models rule: no audio for any model.
    c, server = client("openai-responses", {}, model="gpt-4o-audio-preview")
    with pytest.raises(EngineError, match="takes no audio parts"):
        c.chat().user(["x", Part.audio(data=b"RIFF0000WAVE", media_type="audio/wav")]).execute()
    assert server.bodies == []


def test_openai_plain_text_stays_a_string() -> None:
    c, server = client("openai")
    c.chat().user(["one", "two"]).execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "one\ntwo"}]


def test_anthropic_parts_with_a_cache_mark() -> None:
    c, server = client("anthropic")
    c.chat().user([Part.text("Summarize.", cache=True),
                   Part.document(data=PDF, name="q3.pdf"),
                   Part.image(url="https://example.test/cat.jpg")]).execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Summarize.", "cache_control": {"type": "ephemeral"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": B64_PDF}, "title": "q3.pdf"},
        {"type": "image", "source": {"type": "url", "url": "https://example.test/cat.jpg"}}]}]


def test_gemini_parts() -> None:
    c, server = client("gemini")
    c.chat().user(["Describe.", Part.image(data=PNG, media_type="image/png"),
                   Part.document(url="gs://bucket/q3.pdf", media_type="application/pdf")]
                  ).execute()
    assert server.bodies[0]["contents"] == [{"role": "user", "parts": [
        {"text": "Describe."},
        {"inlineData": {"mimeType": "image/png", "data": B64_PNG}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/q3.pdf"}}]}]


def test_ollama_images() -> None:
    c, server = client("ollama")
    c.chat().user(["What is this?", Part.image(data=PNG, media_type="image/png")]).execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "What is this?",
                                             "images": [B64_PNG]}]


@pytest.mark.parametrize("provider, part, why", [
    ("ollama", Part.document(data=b"%PDF-1.4", media_type="application/pdf"),
     "ollama cannot send a document part given as data: it takes no document parts"),
    ("anthropic", Part.audio(data=b"RIFF", media_type="audio/wav"),
     "anthropic cannot send an audio part given as data: it takes no audio parts"),
    ("deepseek", Part.image(data=PNG, media_type="image/png"),
     "deepseek cannot send an image part given as data: it takes no image parts"),
])
def test_a_part_the_provider_cannot_take_is_refused_before_sending(
        provider: str, part: Part, why: str) -> None:
    c, server = client(provider, {})
    with pytest.raises(EngineError) as caught:
        c.chat().user(["x", part]).execute()
    assert caught.value.kind == "invalid_request" and why in caught.value.message
    assert server.bodies == []


@pytest.mark.parametrize("build, why", [
    (lambda: Part.image(), "exactly one of url= or data="),
    (lambda: Part.image(url="x", data=PNG), "exactly one of url= or data="),
    (lambda: Part.image(data=PNG), "needs media_type"),
    (lambda: Part.image(data=PNG, media_type="application/pdf"), "needs media_type"),
    (lambda: Part.image(url="ftp://host/a.png"),
     "an image part's url must be an absolute http(s) or gs:// URL"),
    (lambda: Part.image(url="data:image/png;base64,@@@"), "does not hold valid base64"),
    (lambda: Part.image(url="data:image/png"), "has no ',' before its data"),
    (lambda: Part.image(url="data:,abc"), "needs media_type"),
    (lambda: Part.document(data=b"caf\xe9", media_type="text/plain"),
     "a text/plain document must be UTF-8: byte 3 is not"),
    (lambda: Part.document(data=b""), "is empty"),
    (lambda: Part.audio(data="text", media_type="audio/wav"), "must be bytes"),
])
def test_bad_parts_fail_where_they_are_built(build: Any, why: str) -> None:
    with pytest.raises(EngineError, match=why.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_a_data_url_is_bytes_in_either_encoding() -> None:
    b64 = Part.image(url=f"data:image/png;base64,{B64_PNG}")
    plain = Part.document(url="data:text/csv;charset=utf-8,a%2Cb%0A1%2C2")
    assert (b64.url, b64.data, b64.media_type) == (None, PNG, "image/png")
    assert (plain.url, plain.data, plain.media_type) == (None, b"a,b\n1,2", "text/csv")
    assert plain.to_context()["text"] == "a,b\n1,2"
    assert Part.document(data=PDF).media_type == "application/pdf"
    assert Part.document(data=PDF).to_context()["text"] is None


def test_anthropic_sends_a_text_document_as_text() -> None:
    c, server = client("anthropic")
    c.chat().user(["Summarize.", Part.document(data="Zürich notes\n".encode(),
                                               media_type="text/markdown", name="n.md")]
                  ).execute()
    assert server.bodies[0]["messages"][0]["content"][1] == {
        "type": "document", "title": "n.md",
        "source": {"type": "text", "media_type": "text/plain", "data": "Zürich notes\n"}}


def test_a_part_never_shows_its_bytes() -> None:
    part = Part.image(data=PNG, media_type="image/png")
    assert repr(part) == f"Part(image (image/png, {len(PNG)} bytes))"
    assert B64_PNG not in repr(Message.user(["x", part]))


def test_a_non_part_in_the_list_is_refused() -> None:
    c, _ = client("openai")
    with pytest.raises(EngineError, match="a message part must be a str or a Part, not dict"):
        c.chat().user(["x", {"type": "image"}])  # type: ignore[list-item]


@given(st.binary(min_size=1, max_size=2048), st.text(max_size=200))
def test_arbitrary_bytes_and_text_always_make_valid_json(data: bytes, text: str) -> None:
    c, server = client("anthropic")
    c.chat().user([text, Part.document(data=data)]).execute()
    sent = server.bodies[-1]["messages"][0]["content"]
    assert base64.b64decode(sent[-1]["source"]["data"]) == data


# ---------------------------------------------------------------- structured output

@pytest.mark.parametrize("provider, where, want", [
    ("openai", "response_format", {"type": "json_schema", "json_schema": {
        "name": "Dog", "schema": DOG, "strict": True}}),
    ("anthropic", "output_config", {"format": {"type": "json_schema", "schema": DOG}}),
    ("gemini", "generationConfig", {"responseMimeType": "application/json",
                                    "responseJsonSchema": DOG}),
    ("ollama", "format", DOG),
])
def test_a_schema_is_sent_and_the_answer_parsed(provider: str, where: str, want: Any) -> None:
    c, server = client(provider)
    resp = c.chat().user("A dog?").response_format(DOG, name="Dog").execute()
    assert server.bodies[0][where] == want
    assert resp.parsed == {"name": "Rex", "age": 3}


@pytest.mark.parametrize("provider, where, want", [
    ("openai", "response_format", {"type": "json_object"}),
    ("gemini", "generationConfig", {"responseMimeType": "application/json"}),
    ("ollama", "format", "json"),
    ("deepseek", "response_format", {"type": "json_object"}),
])
def test_json_mode(provider: str, where: str, want: Any) -> None:
    c, server = client(provider, ANSWERS["openai"] if provider == "deepseek" else None)
    resp = c.chat().user("A dog as JSON?").json().execute()
    assert server.bodies[0][where] == want
    assert resp.parsed == {"name": "Rex", "age": 3}


def test_json_mode_is_refused_where_there_is_none() -> None:
    c, server = client("anthropic")
    with pytest.raises(EngineError, match="anthropic cannot ask for a json_object answer "
                       r"\(it offers: json_schema\)"):
        c.chat().user("x").json().execute()
    assert server.bodies == []


def test_without_a_format_parsed_is_none() -> None:
    c, _ = client("openai")
    assert c.chat().user("x").execute().parsed is None


@pytest.mark.parametrize("content, why", [
    ("Sure! Here is a dog: Rex", "not JSON"),
    ('{"name": "Rex"}', "at the top level: 'age' is a required property"),
    ('{"name": "Rex", "age": "three"}', "at age: 'three' is not of type 'integer'"),
])
def test_an_answer_that_does_not_fit_is_malformed_and_keeps_the_text(content: str,
                                                                     why: str) -> None:
    answer = {"choices": [{"message": {"content": content}, "finish_reason": "stop"}]}
    c, _ = client("openai", answer)
    with pytest.raises(EngineError) as caught:
        c.chat().user("A dog?").response_format(DOG).execute()
    error = caught.value
    assert error.kind == "malformed_response" and not error.retryable
    assert why in error.message
    assert error.partial.content == content


@pytest.mark.parametrize("schema, why", [
    ({"type": "objekt"}, "not a valid JSON Schema"),
    ({"type": "object", "properties": {"a": {"minimum": "x"}}}, "at properties/a/minimum"),
    ("a string", "takes a JSON Schema (a dict) or a pydantic model class"),
])
def test_an_invalid_schema_is_refused_at_the_call(schema: Any, why: str) -> None:
    c, _ = client("openai")
    with pytest.raises(EngineError, match=why.replace("(", r"\(").replace(")", r"\)")):
        c.chat().user("x").response_format(schema)


def test_a_bad_name_is_refused() -> None:
    c, _ = client("openai")
    with pytest.raises(EngineError, match="name must be 1 to 64"):
        c.chat().user("x").response_format(DOG, name="a dog")


def test_a_pydantic_model_gives_schema_name_and_instance() -> None:
    import pydantic

    class Dog(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        name: str
        age: int

    c, server = client("openai")
    resp = c.chat().user("A dog?").response_format(Dog).execute()
    sent = server.bodies[0]["response_format"]["json_schema"]
    assert sent["name"] == "Dog" and sent["schema"]["required"] == ["name", "age"]
    assert isinstance(resp.parsed, Dog) and resp.parsed.age == 3


def test_anthropic_reports_cache_writes_and_reads() -> None:
    answer = {**ANSWERS["anthropic"], "usage": {"input_tokens": 3, "output_tokens": 33,
                                               "cache_creation_input_tokens": 418,
                                               "cache_read_input_tokens": 1111}}
    c, _ = client("anthropic", answer)
    usage = c.chat().user([Part.text("Long document.", cache=True)]).execute().usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (1532, 1111,
                                                                                    418)


# ---------------------------------------------------------------- bedrock (Converse)

BEDROCK_ANSWER = {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                  "stopReason": "end_turn",
                  "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}


def bedrock() -> tuple[SyncAiClient, Server]:
    server = Server(BEDROCK_ANSWER)
    c = SyncAiClient.create("bedrock/m", api_key="AKIDEXAMPLE:secretsecret",
                            settings={"region": "us-east-1"},
                            http_client=httpx.Client(transport=httpx.MockTransport(server)),
                            max_retries=0)
    return c, server


def test_bedrock_sends_image_and_document_blocks_with_their_bytes() -> None:
    c, server = bedrock()
    c.chat().user([Part.text("Compare."), Part.image(data=PNG, media_type="image/png"),
                   Part.document(data=PDF, name="Q3 report_v2.final  (draft).pdf", cache=True),
                   Part.document(data=b"a,b\n", media_type="text/csv")]).execute()
    assert server.bodies[0]["messages"] == [{"role": "user", "content": [
        {"text": "Compare."},
        {"image": {"format": "png", "source": {"bytes": B64_PNG}}},
        {"document": {"format": "pdf", "name": "Q3 report-v2-final (draft)-pdf",
                      "source": {"bytes": B64_PDF}}},
        {"cachePoint": {"type": "default"}},
        {"document": {"format": "csv", "name": "document",
                      "source": {"bytes": base64.b64encode(b"a,b\n").decode()}}}]}]


@pytest.mark.parametrize("part, why", [
    (Part.image(data=b"\0" * 3932161, media_type="image/png"),
     "bedrock takes image parts of at most 3932160 bytes; this one has 3932161"),
    (Part.image(data=PNG, media_type="image/heic"),
     "bedrock takes image parts as image/gif, image/jpeg, image/png, image/webp only, "
     "not image/heic"),
    (Part.document(data=b"%PDF" + b"\0" * 4718589),
     "bedrock takes document parts of at most 4718592 bytes; this one has 4718593"),
    (Part.audio(data=b"RIFF0000WAVE", media_type="audio/wav"),
     "bedrock cannot send an audio part given as data: it takes no audio parts"),
])
def test_bedrock_refuses_what_converse_would_reject(part: Part, why: str) -> None:
    c, server = bedrock()
    with pytest.raises(EngineError) as caught:
        c.chat().user(["x", part]).execute()
    assert (caught.value.kind, caught.value.message) == ("invalid_request", why)
    assert server.bodies == []


@pytest.mark.parametrize("provider, part, why", [
    ("openai", Part.document(data=b"notes", media_type="text/plain"),
     "openai takes document parts as application/pdf only, not text/plain"),
    ("openai", Part.image(data=PNG, media_type="image/heic"),
     "openai takes image parts as image/gif, image/jpeg, image/png, image/webp only, "
     "not image/heic"),
    ("anthropic", Part.image(data=b"\0" * 3932161, media_type="image/png"),
     "anthropic takes image parts of at most 3932160 bytes; this one has 3932161"),
    ("gemini", Part.image(data=b"GIF89a", media_type="image/gif"),
     "gemini takes image parts as image/heic, image/heif, image/jpeg, image/png, image/webp "
     "only, not image/gif"),
])
def test_a_part_over_the_provider_limits_is_refused_before_sending(
        provider: str, part: Part, why: str) -> None:
    c, server = client(provider, {})
    with pytest.raises(EngineError) as caught:
        c.chat().user(["x", part]).execute()
    assert (caught.value.kind, caught.value.message.split(" (model ")[0]) == (
        "invalid_request", why)
    assert server.bodies == []


@pytest.mark.parametrize("provider, part, why", [
    ("cerebras", Part.image(url="https://example.test/cat.png"),
     "cerebras cannot send an image part given as url: it takes image parts as data only"),
    ("groq", Part.document(data=PDF),
     "groq cannot send a document part given as data: it takes no document parts"),
    ("groq", Part.image(data=b"\x89PNG" + b"\0" * 3145725, media_type="image/png"),
     "groq takes image parts of at most 3145728 bytes; this one has 3145729"),
    ("mistral", Part.document(data=PDF),
     "mistral cannot send a document part given as data: it takes no document parts"),
    ("together", Part.audio(data=b"RIFF0000WAVE", media_type="audio/wav"),
     "together cannot send an audio part given as data: it takes no audio parts"),
])
def test_openai_compatible_children_refuse_what_their_endpoint_lacks(
        provider: str, part: Part, why: str) -> None:
    c, server = client(provider, {})
    with pytest.raises(EngineError) as caught:
        c.chat().user(["x", part]).execute()
    assert caught.value.message.split(" (model ")[0] == why
    assert server.bodies == []


def test_openrouter_takes_audio_as_input_audio() -> None:
    c, server = client("openrouter", ANSWERS["openai"])
    c.chat().user(["Transcribe.", Part.audio(data=b"ID3\x03", media_type="audio/mpeg")]
                  ).execute()
    assert server.bodies[0]["messages"][0]["content"][1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(b"ID3\x03").decode(), "format": "mp3"}}
