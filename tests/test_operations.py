"""The operations beside chat: embed, list_models, count_tokens.

Over a test manifest served through ``httpx.MockTransport`` (the exact
requests sent, the normalized results) and over a real server on 127.0.0.1
(the async client), plus the answers a broken provider gives: each is a clear
``EngineError``, never a short or reordered list.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import AiClient, EngineError, SyncAiClient
from engine.clock import Clock
from engine.manifest import clear_cache
from engine.manifest.check import check_file
from engine.manifest.load import load_manifest
from engine.protocol.extract import decode_vector, embed_answer, model_page

pytestmark = pytest.mark.fast

MANIFEST = """\
manifest: 1
id: acme
base_url: https://api.acme.test/v1
auth: {scheme: bearer, env: [ACME_KEY]}
models:
  big-model: {context_window: 200000, max_output: 8192, capabilities: [tools]}
  embed-small: {input_price: 0.02}
chat:
  path: /chat
  body:
    model: "{{ model }}"
    system: "{{ system }}"
    messages: "{{ messages | map(attribute='content') | list }}"
    max_tokens: "{{ params.max_tokens or 1024 }}"
    tools: {$each: "{{ tools }}", as: t, do: {name: "{{ t.name }}"}}
  response: {content: answer}
embed:
  path: /embeddings
  max_inputs: 3
  dimensions: true
  input_types: {query: search_query, document: search_document}
  body:
    model: "{{ model }}"
    input: "{{ inputs }}"
    dimensions: "{{ dimensions }}"
    input_type: "{{ input_type }}"
  response:
    vectors: data[].embedding
    index: data[].index
    model: model
    usage: {prompt_tokens: usage.prompt_tokens}
  errors:
    rules:
      - {name: too_long, status: 400, message_matches: "too long", kind: context_length_exceeded}
list_models:
  path: /models
  query: {limit: 2, after: "{{ cursor }}"}
  response:
    models: data
    id: "strip_prefix(name, 'models/')"
    context_window: context
    capabilities: {vision: "contains(inputs, 'image')"}
  pages: {next: last, more: has_more, max_pages: 5}
count_tokens:
  path: /count
  body: {max_tokens: null}
  wrap: request
  response: {tokens: count}
errors:
  message: error.message
"""

KEY = "acme-test-key-0123456789"


def b64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


@pytest.fixture
def protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "acme.yaml").write_text(MANIFEST)
    (tmp_path / "vecs.yaml").write_text(EMBED_ONLY)
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()  # another test's "acme" may be loaded already
    return tmp_path


EMBED_ONLY = """\
manifest: 1
id: vecs
base_url: https://vecs.test
auth: {scheme: bearer, env: [VECS_KEY]}
embed:
  path: /embed
  allow_empty: true
  body: {texts: "{{ inputs }}"}
  response: {vectors: vectors}
"""


class Server:
    """A scripted provider: answers by path, records every request."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.answers[request.url.path]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            answer = answer(request)
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return httpx.Response(status, json=body)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def sync_client(server: Server, model: str | list[str] = "acme/embed-small",
                **kw: Any) -> SyncAiClient:
    return SyncAiClient.create(model, api_key=KEY, max_retries=kw.pop("max_retries", 0),
                               http_client=httpx.Client(transport=httpx.MockTransport(server)),
                               **kw)


def vectors_answer(request: httpx.Request) -> dict[str, Any]:
    """One vector per input, [position, length of the text], listed in reverse."""
    texts = json.loads(request.content)["input"]
    data = [{"index": i, "embedding": b64([float(i), float(len(t))])}
            for i, t in enumerate(texts)]
    return {"data": data[::-1], "model": "embed-small-v2",
            "usage": {"prompt_tokens": len(texts)}}


# ---------------------------------------------------------------- embed

def test_embed_splits_by_max_inputs_and_stitches_in_input_order(protocols: Path) -> None:
    server = Server({"/v1/embeddings": [vectors_answer]})
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    emb, stats = sync_client(server).embed_with_stats(texts, dimensions=2,
                                                      input_type="document")
    assert server.bodies() == [
        {"model": "embed-small", "input": ["a", "bb", "ccc"], "dimensions": 2,
         "input_type": "search_document"},
        {"model": "embed-small", "input": ["dddd", "eeeee"], "dimensions": 2,
         "input_type": "search_document"},
    ]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert emb.vectors == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [0.0, 4.0], [1.0, 5.0]]
    assert (emb.model, emb.provider, len(emb)) == ("embed-small-v2", "acme", 5)
    assert (emb.usage.prompt_tokens, emb.usage.total_tokens) == (5, 5)
    assert (stats.attempts, stats.prompt_tokens, stats.completion_tokens) == (2, 5, 0)
    assert stats.cost_usd == pytest.approx(5 * 0.02 / 1_000_000)
    assert len(emb.raw) == 2


def test_one_text_and_batch_size(protocols: Path) -> None:
    server = Server({"/v1/embeddings": [vectors_answer]})
    client = sync_client(server)
    assert client.embed("only").vectors == [[0.0, 4.0]]
    client.embed(["a", "b", "c"], batch_size=1)
    assert [b["input"] for b in server.bodies()] == [["only"], ["a"], ["b"], ["c"]]
    with pytest.raises(EngineError, match=r"batch_size=4 is more than the 3 texts"):
        client.embed(["a"], batch_size=4)


@pytest.mark.parametrize("kwargs, message", [
    ({"inputs": []}, "at least one input text"),
    ({"inputs": ["a", 3]}, "input 1 must be a str"),
    ({"inputs": b"bytes"}, "a str or a list of str"),
    ({"inputs": ["ok", "  "]}, "input 1 is empty: acme refuses empty texts"),
    ({"inputs": ["a"], "input_type": "passage"}, "input_type must be one of"),
    ({"inputs": ["a"], "input_type": "clustering"},
     "acme cannot send input_type='clustering': it takes query, document"),
    ({"inputs": ["a"], "dimensions": 0}, "dimensions must be between 1"),
    ({"inputs": ["a"] * 7, "max_requests": 2}, "7 inputs need 3 requests of at most 3"),
])
def test_bad_embed_input_is_refused_before_sending(protocols: Path, kwargs: dict[str, Any],
                                                   message: str) -> None:
    server = Server({"/v1/embeddings": [vectors_answer]})
    inputs = kwargs.pop("inputs")
    with pytest.raises(EngineError, match=message) as caught:
        sync_client(server).embed(inputs, **kwargs)
    assert caught.value.kind == "invalid_request"
    assert server.requests == []


def test_dimensions_refused_where_the_manifest_sends_none(protocols: Path) -> None:
    server = Server({"/embed": [{"vectors": [[1.0]]}]})
    client = sync_client(server, "vecs/v1")
    with pytest.raises(EngineError, match="vecs cannot set the embedding dimensions"):
        client.embed(["a"], dimensions=8)
    with pytest.raises(EngineError, match="vecs cannot send input_type='query': its "
                       "embeddings take no input type"):
        client.embed(["a"], input_type="query")
    assert client.embed([""]).vectors == [[1.0]]  # allow_empty
    assert server.bodies() == [{"texts": [""]}]


@pytest.mark.parametrize("answer, message", [
    ({"data": [{"index": 0, "embedding": [1.0]}]}, r"1 vector\(s\) for 2 input\(s\)"),
    ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]},
     "are not the positions 0..1"),
    ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [2.0, 3.0]}]},
     "differ in length"),
    ({"data": [{"index": 0, "embedding": "not base64!"}, {"index": 1, "embedding": [1.0]}]},
     "not base64"),
    ({"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]},
     "neither numbers nor base64"),
    ({"nothing": True}, "no list of vectors"),
])
def test_a_broken_answer_is_malformed_never_a_short_list(protocols: Path, answer: Any,
                                                         message: str) -> None:
    server = Server({"/v1/embeddings": [answer]})
    with pytest.raises(EngineError, match=message) as caught:
        sync_client(server).embed(["a", "b"])
    assert caught.value.kind == "malformed_response"


def test_embed_errors_use_the_operation_rules_first(protocols: Path) -> None:
    server = Server({"/v1/embeddings": [(400, {"error": {"message": "input too long"}})]})
    with pytest.raises(EngineError) as caught:
        sync_client(server).embed(["a"])
    assert (caught.value.kind, caught.value.status) == ("context_length_exceeded", 400)


def test_embed_retries_a_batch_and_pins_later_batches_to_the_model_that_answered(
        protocols: Path) -> None:
    busy = (503, {"error": {"message": "busy"}})
    server = Server({"/v1/embeddings": [
        busy, busy,  # first batch on model 1, retried once, then it falls back
        vectors_answer,  # first batch on model 2
        busy,  # second batch: model 2 again (never model 1), retried
        vectors_answer,
    ]})
    client = sync_client(server, ["acme/embed-small", "acme/embed-large"],
                         retry=_no_wait_policy(), clock=NoSleep(), max_retries=1)
    emb, stats = client.embed_with_stats(["a", "b", "c", "d"])
    models = [b["model"] for b in server.bodies()]
    assert models == ["embed-small", "embed-small", "embed-large", "embed-large",
                      "embed-large"]
    assert len(emb.vectors) == 4 and stats.attempts == 5 and stats.model == "embed-large"


class NoSleep(Clock):
    def sleep(self, seconds: float) -> None:
        pass

    async def asleep(self, seconds: float) -> None:
        pass


def _no_wait_policy() -> Any:
    from engine import RetryPolicy
    return RetryPolicy(max_retries=1, backoff_base=0.0)


def test_decode_vector_base64_is_little_endian_float32() -> None:
    assert decode_vector(b64([0.5, -2.0]), "p") == [0.5, -2.0]
    with pytest.raises(EngineError, match="not a whole number of float32"):
        decode_vector(base64.b64encode(b"abc").decode(), "p")
    with pytest.raises(EngineError):
        decode_vector([], "p")
    with pytest.raises(EngineError):
        decode_vector([True, 1.0], "p")


def test_embed_answer_fed_data(protocols: Path) -> None:
    spec = load_manifest("acme").embed
    assert spec is not None
    data = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}],
            "model": "m", "usage": {"prompt_tokens": 3}}
    assert embed_answer(spec, data, 2, "acme") == ([[1.0], [2.0]], 3, None, "m")


# ---------------------------------------------------------------- list_models

def page(names: list[str], last: str | None, more: bool) -> dict[str, Any]:
    return {"data": [{"name": f"models/{n}", "context": 1000 if n == "new" else None,
                      "inputs": ["text", "image"] if n == "new" else ["text"]}
                     for n in names], "last": last, "has_more": more}


def test_list_models_reads_every_page_and_merges_the_catalogue(protocols: Path) -> None:
    server = Server({"/v1/models": [page(["big-model", "new"], "c1", True),
                                    page(["other"], "c2", False)]})
    models = sync_client(server).list_models()
    assert [str(r.url) for r in server.requests] == [
        "https://api.acme.test/v1/models?limit=2",
        "https://api.acme.test/v1/models?limit=2&after=c1"]
    assert server.requests[0].method == "GET" and server.requests[0].content == b""
    assert "content-type" not in server.requests[0].headers
    big, new, other = models
    assert (big.id, big.context_window, big.max_output, big.capabilities, big.in_catalogue) \
        == ("big-model", 200000, 8192, (), True)
    assert (new.id, new.context_window, new.capabilities, new.in_catalogue) == \
        ("new", 1000, ("vision",), False)
    assert other.raw == {"name": "models/other", "context": None, "inputs": ["text"]}
    assert other.provider == "acme"


def test_a_repeated_cursor_or_endless_listing_is_malformed(protocols: Path) -> None:
    server = Server({"/v1/models": [page(["a"], "c1", True)]})
    with pytest.raises(EngineError, match="repeats the page cursor 'c1'"):
        sync_client(server).list_models()
    counter = iter(range(100))
    endless = Server({"/v1/models": [lambda r: page(["a"], f"c{next(counter)}", True)]})
    with pytest.raises(EngineError, match="did not end after 5 pages"):
        sync_client(endless).list_models()
    assert len(endless.requests) == 5


def test_model_page_refuses_an_entry_without_id(protocols: Path) -> None:
    manifest = load_manifest("acme")
    assert manifest.list_models is not None
    # Matched without the word "id": an earlier test may have registered a
    # short secret that redaction removes wherever it stands alone.
    with pytest.raises(EngineError, match=r"a listed model has no .*'context': 1"):
        model_page(manifest.list_models, manifest, {"data": [{"context": 1}]})


# ---------------------------------------------------------------- count_tokens

def test_count_tokens_renders_the_chat_request_with_the_counter_changes(
        protocols: Path) -> None:
    server = Server({"/v1/count": [{"count": 42}]})
    chat = sync_client(server, "acme/big-model").chat().system("Be brief.").user("Hi")
    count = chat.tools([{"name": "get_weather", "parameters": {"type": "object"}}]) \
        .max_tokens(50).count_tokens()
    assert count == 42
    assert server.bodies() == [{"request": {"model": "big-model", "system": "Be brief.",
                                            "messages": ["Be brief.", "Hi"],
                                            "tools": [{"name": "get_weather"}]}}]


def test_count_tokens_without_a_count_is_malformed(protocols: Path) -> None:
    server = Server({"/v1/count": [{"count": "many"}]})
    with pytest.raises(EngineError, match="holds no token count") as caught:
        sync_client(server, "acme/big-model").chat().user("Hi").count_tokens()
    assert caught.value.kind == "malformed_response"


# ---------------------------------------------------------------- lacking operations

def test_an_operation_the_manifest_lacks_is_refused_before_any_request(
        protocols: Path) -> None:
    server = Server({})
    client = sync_client(server, "vecs/v1")
    for call, op in ((lambda: client.list_models(), "list_models"),
                     (lambda: client.chat().user("x").count_tokens(), "count_tokens"),
                     (lambda: client.chat().user("x").execute(), "chat")):
        with pytest.raises(EngineError, match=f"vecs has no {op} operation \\(its manifest "
                           f"describes: embed\\)") as caught:
            call()
        assert caught.value.kind == "invalid_request"
    assert server.requests == []


def test_every_model_of_an_embed_chain_must_embed(protocols: Path) -> None:
    (protocols / "chatty.yaml").write_text(
        "manifest: 1\nid: chatty\nbase_url: https://c.test\n"
        "auth: {scheme: bearer, env: [C_KEY]}\n"
        "chat: {path: /c, body: {}, response: {content: a}}\n")
    server = Server({})
    with pytest.raises(EngineError, match="chatty has no embed operation"):
        sync_client(server, ["acme/embed-small", "chatty/m"]).embed(["a"])
    assert server.requests == []


def test_the_validator_checks_the_operation_sections(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(MANIFEST.replace("input_types: {query: search_query",
                                     "input_types: {queries: search_query")
                    .replace("wrap: request", "wrap: request\n  extra: 1"))
    problems = "\n".join(check_file(path).problems)
    assert "embed.input_types.queries: unknown field" in problems
    assert "count_tokens.extra: unknown field" in problems
    path.write_text(MANIFEST.replace('input: "{{ inputs }}"', 'input: "{{ input }}"'))
    problems = "\n".join(check_file(path).problems)
    assert "embed.body.input" in problems and "'input' is undefined" in problems
    path.write_text(MANIFEST.replace("vectors: data[].embedding", 'vectors: "data[].["'))
    assert any("embed.response.vectors" in p for p in check_file(path).problems)


def test_a_manifest_needs_an_operation(tmp_path: Path) -> None:
    path = tmp_path / "none.yaml"
    path.write_text("manifest: 1\nid: none\nbase_url: https://n.test\n"
                    "auth: {scheme: bearer, env: [N_KEY]}\n")
    assert any("describes at least one operation" in p for p in check_file(path).problems)


def test_count_tokens_needs_chat(tmp_path: Path) -> None:
    path = tmp_path / "vecs.yaml"
    path.write_text(EMBED_ONLY + "count_tokens: {path: /c, response: {tokens: n}}\n")
    assert any("count_tokens renders the chat request" in p
               for p in check_file(path).problems)


# ---------------------------------------------------------------- async, real server

async def test_async_operations_over_a_real_server(protocols: Path) -> None:
    from engine.conformance.server import ReplayServer, ScriptedResponse

    seen: list[tuple[str, str, bytes]] = []

    def handler(request: Any) -> ScriptedResponse:
        seen.append((request.method, request.path, request.body))
        if request.path.startswith("/v1/embeddings"):
            texts = json.loads(request.body)["input"]
            return ScriptedResponse.json({"data": [{"index": i, "embedding": [float(i)]}
                                                   for i in range(len(texts))]})
        if request.path.startswith("/v1/models"):
            return ScriptedResponse.json(page(["m1"], None, False))
        return ScriptedResponse.json({"count": 7})

    with ReplayServer() as server:
        server.handler = handler
        async with await AiClient.create("acme/big-model", api_key=KEY,
                                         base_url=server.url + "/v1") as client:
            emb = await client.embed(["a", "b", "c", "d"])
            models = await client.list_models()
            count = await client.chat().user("hi").count_tokens()
    assert emb.vectors == [[0.0], [1.0], [2.0], [0.0]]
    assert [m.id for m in models] == ["m1"] and count == 7
    assert [(m, p) for m, p, _ in seen] == [
        ("POST", "/v1/embeddings"), ("POST", "/v1/embeddings"), ("GET", "/v1/models?limit=2"),
        ("POST", "/v1/count")]


def test_hooks_see_each_request_of_an_operation(protocols: Path) -> None:
    seen: list[tuple[str, str, int | None]] = []

    class Hook:
        def on_response(self, info: Any) -> None:
            seen.append((info.operation, info.model, info.usage.prompt_tokens))

    server = Server({"/v1/embeddings": [vectors_answer], "/v1/models": [page([], None, False)]})
    client = sync_client(server, hooks=[Hook()])
    client.embed(["a", "b", "c", "d"])
    client.list_models()
    assert seen == [("embed", "embed-small", 3), ("embed", "embed-small", 1),
                    ("list_models", "embed-small", 0)]
