"""``python -m conformance.demo``: one piece of chat code, five providers, offline.

Starts a real HTTP server on 127.0.0.1 that answers like each provider, from
recorded answers (``conformance/recordings`` are byte-exact captures of real
streams; ``tests/data/responses`` are real-format bodies, each file's origin
noted beside it), then runs the *same* code against every provider by
switching only the model id: a plain call with stats, then a stream. No API
key and no network needed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from conformance.server import RecordedRequest, ReplayServer, ScriptedResponse
from engine import AiClient, EngineError

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
RECORDINGS = HERE / "recordings"

# model id -> (path prefix on the local server, plain answer, stream answer)
PROVIDERS = {
    "openai/gpt-4o-mini": ("/openai/v1", "openai_chat_text.json",
                           "openai_chat_stream_toolcall.sse"),
    "anthropic/claude-sonnet-4-20250514": ("/anthropic", "anthropic_messages_text.json",
                                           "anthropic_stream_thinking_padded.sse"),
    "gemini/gemini-2.5-pro": ("/gemini/v1beta", "gemini_generate_text_thoughts.json",
                              "gemini_stream_thoughts_crlf.sse"),
    "deepseek/deepseek-reasoner": ("/deepseek", "deepseek_chat_reasoner_text.json",
                                   "deepseek_stream_reasoning_content.sse"),
    "ollama/llama3.2": ("/ollama", "ollama_chat_text.json", None),
}

# Constructed from the streaming example of ollama docs/api.md (one JSON
# object per line on the wire); no public raw recording of /api/chat exists.
OLLAMA_STREAM = b"".join(json.dumps(obj).encode() + b"\n" for obj in [
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00",
     "message": {"role": "assistant", "content": "The", "images": None}, "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.485406455-07:00",
     "message": {"role": "assistant", "content": " sky is blue because of", "images": None},
     "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.585406455-07:00",
     "message": {"role": "assistant", "content": " Rayleigh scattering.", "images": None},
     "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z",
     "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
     "total_duration": 4883583458, "load_duration": 1334875, "prompt_eval_count": 26,
     "prompt_eval_duration": 342546000, "eval_count": 282, "eval_duration": 4535599000},
])


def split_events(body: bytes) -> list[bytes]:
    """Cut a recorded SSE body after each event, as a server flushes them."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in body:
            parts = body.split(sep)
            chunks = [p + sep for p in parts[:-1]]
            return chunks + ([parts[-1]] if parts[-1] else [])
    return [body]


def answer(request: RecordedRequest) -> ScriptedResponse:
    """Route by path prefix; stream when the request asks for it."""
    for prefix, plain, streamed in PROVIDERS.values():
        if not request.url_path.startswith(prefix + "/"):
            continue
        body = request.json()
        wants_stream = body.get("stream") is True or "stream" in request.url_path
        if not wants_stream:
            return ScriptedResponse.json(json.loads((DATA / "responses" / plain).read_text()))
        if streamed is None:
            return ScriptedResponse(200, [("content-type", "application/x-ndjson")],
                                    OLLAMA_STREAM.splitlines(keepends=True))
        return ScriptedResponse.sse(split_events((RECORDINGS / streamed).read_bytes()))
    return ScriptedResponse.json({"error": {"message": f"no route for {request.path}"}}, 404)


def short(text: str | None, width: int = 70) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def chat_once(model: str, base_url: str) -> None:
    """The application code: identical for every provider."""
    async with await AiClient.create(model, api_key="demo-key", base_url=base_url) as client:
        resp, stats = await (client.chat()
                             .system("You are a helpful assistant.")
                             .user("Say hello.")
                             .max_tokens(300)
                             .execute_with_stats())
        print(f"  plain   {short(resp.content)!r}")
        print(f"          finish={resp.finish_reason} tokens={stats.prompt_tokens}+"
              f"{stats.completion_tokens}={stats.total_tokens} latency={stats.latency_ms:.1f} ms")

        stream = client.chat().user("Tell me something.").stream()
        deltas = 0
        async with stream:
            async for event in stream:
                deltas += event.is_content_delta or event.is_thinking_delta
        final = stream.response
        print(f"  stream  {short(final.content)!r}")
        if final.thinking:
            print(f"          thinking {short(final.thinking, 60)!r}")
        for call in final.tool_calls:
            print(f"          tool call {call.name}({json.dumps(call.arguments)})")
        ttft = f"{stream.stats.ttft_ms:.1f} ms" if stream.stats.ttft_ms is not None else "-"
        print(f"          finish={final.finish_reason} deltas={deltas} "
              f"tokens={final.usage.total_tokens} ttft={ttft}")


async def main() -> int:
    with ReplayServer(answer) as server:
        print(f"Recorded provider answers served on {server.url}\n")
        for model, (prefix, _, _) in PROVIDERS.items():
            print(model)
            try:
                await chat_once(model, server.url + prefix)
            except EngineError as exc:
                print(f"  error: {exc}")
                return 1
            print()
        print(f"{len(server.requests)} requests answered; same code, five providers.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
