"""Benchmark: the client's per-call cost against raw httpx doing the same work.

Same run, same loopback server, same answer: raw httpx posts a hand-built
JSON body, decodes the answer and picks out the text; the engine builds the
request from its manifest, sends it, maps the answer and computes stats.
Prints calls/s for each and the ratio, for plain calls and for streams.

    .venv/bin/python tools/bench_client.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import AiClient  # noqa: E402
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse  # noqa: E402

ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
          "choices": [{"index": 0, "finish_reason": "stop", "message": {
              "role": "assistant", "content": "The capital of France is Paris."}}],
          "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22}}
STREAM = (ROOT / "conformance/recordings/openai_chat_stream_toolcall.sse").read_bytes()


def handler(request: RecordedRequest) -> ScriptedResponse:
    if b'"stream":true' in request.body:
        return ScriptedResponse.sse([STREAM])
    return ScriptedResponse.json(ANSWER)


async def raw_calls(url: str, n: int) -> float:
    async with httpx.AsyncClient() as http:
        start = time.perf_counter()
        for _ in range(n):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
            resp = await http.post(f"{url}/v1/chat/completions", json=body,
                                   headers={"authorization": "Bearer sk-bench"})
            text = resp.json()["choices"][0]["message"]["content"]
            assert text
        return time.perf_counter() - start


async def engine_calls(url: str, n: int) -> float:
    async with await AiClient.create("openai/gpt-4o-mini", api_key="sk-bench",
                                     base_url=f"{url}/v1") as client:
        start = time.perf_counter()
        for _ in range(n):
            resp = await client.chat().user("Hi").execute()
            assert resp.content
        return time.perf_counter() - start


async def raw_streams(url: str, n: int) -> float:
    async with httpx.AsyncClient() as http:
        start = time.perf_counter()
        for _ in range(n):
            body = {"model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": "Hi"}]}
            async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
        return time.perf_counter() - start


async def engine_streams(url: str, n: int) -> float:
    async with await AiClient.create("openai/gpt-4o-mini", api_key="sk-bench",
                                     base_url=f"{url}/v1") as client:
        start = time.perf_counter()
        for _ in range(n):
            stream = client.chat().user("Hi").stream()
            async for _event in stream:
                pass
            assert stream.response.tool_calls
        return time.perf_counter() - start


async def main(calls: int, rounds: int) -> None:
    with ReplayServer(handler) as server:
        await engine_calls(server.url, 20)  # warm: manifest load, connection pool
        rows = []
        for label, raw, ours in (("chat", raw_calls, engine_calls),
                                 ("stream", raw_streams, engine_streams)):
            best_raw = min([await raw(server.url, calls) for _ in range(rounds)])
            best_ours = min([await ours(server.url, calls) for _ in range(rounds)])
            rows.append((label, calls / best_raw, calls / best_ours, best_ours / best_raw))
    print(f"{'work':8} {'raw httpx/s':>12} {'engine/s':>10} {'time ratio':>11}")
    for label, raw_rate, our_rate, ratio in rows:
        print(f"{label:8} {raw_rate:12.0f} {our_rate:10.0f} {ratio:11.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
