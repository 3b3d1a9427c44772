"""Load benchmark: many concurrent streams and many sequential calls through ONE client.

A :class:`conformance.server.ReplayServer` on 127.0.0.1 (in a separate
process, so the numbers below are the client's alone) answers OpenAI-format
requests. A stream's text is unique per request: ``"stream-<n>: "`` plus 40
words derived from ``n``, sent as many small SSE chunks (one event per word,
one socket write per event). Then:

1. ``--streams`` (default 1,000) concurrent streams through one ``AiClient``
   sharing one ``httpx.AsyncClient(limits=Limits(max_connections=200,
   max_keepalive_connections=200), timeout=60)``: wall time, streams/s,
   peak memory (tracemalloc peak, ru_maxrss), and a check that every stream's
   text arrived whole and unmixed (equal to what the server sent for it, both
   the concatenated deltas and ``stream.response.content``).
2. ``--calls`` (default 10,000) sequential non-stream calls on one client:
   tracemalloc current and RSS at the start, after 1,000 and at the end.
3. ``--burst`` (default 1,000) concurrent plain calls, then as many concurrent
   streams, on one *default* client (``AiClient.create(..., timeout=10)``, no
   ``http_client``): wall time and failures, beside raw ``httpx.AsyncClient()``
   with its defaults posting the same requests at once (it has no in-flight
   cap: its failures are the pool timeouts the engine's cap avoids).

    .venv/bin/python tools/bench_load.py [--streams 1000] [--calls 10000]

Timing runs without tracemalloc (it slows allocation-heavy code several
times); the memory figures of phase 1 come from a second, traced run of the
same streams.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import AiClient  # noqa: E402
from engine.conformance.server import RecordedRequest, ReplayServer, ScriptedResponse  # noqa: E402

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber", "basil", "cedar", "dune",
    "ember", "fjord", "grove", "heath", "islet", "jade", "knoll", "lagoon",
]
MODEL = "gpt-4o-mini"


# ---------------------------------------------------------------- what the server says

def stream_text(tag: str) -> str:
    """The unique text for request *tag* ("stream-<n>"): the tag and 40 derived words."""
    digest = hashlib.sha256(tag.encode()).digest() * 2
    return f"{tag}: " + " ".join(WORDS[b % len(WORDS)] for b in digest[:40])


def _pieces(text: str) -> list[str]:
    head, _, rest = text.partition(": ")
    words = rest.split(" ")
    return [head + ": ", *(w + (" " if i + 1 < len(words) else "") for i, w in enumerate(words))]


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def handler(request: RecordedRequest) -> ScriptedResponse:
    body = request.json()
    tag = body["messages"][-1]["content"]
    if not body.get("stream"):
        return ScriptedResponse.json({
            "id": "c", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer to {tag}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})
    base = {"id": "c", "object": "chat.completion.chunk", "model": MODEL}
    chunks = [_event({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                  "content": ""}}]})]
    for piece in _pieces(stream_text(tag)):
        chunks.append(_event({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    chunks.append(_event({**base, "choices": [{"index": 0, "delta": {},
                                               "finish_reason": "stop"}]}))
    chunks.append(_event({**base, "choices": [], "usage": {
        "prompt_tokens": 5, "completion_tokens": 41, "total_tokens": 46}}))
    chunks.append(b"data: [DONE]\n\n")
    return ScriptedResponse.sse(chunks)


def serve() -> None:
    """``--serve``: run the server until stdin closes (the benchmark's child process)."""
    with ReplayServer(handler) as server:
        print(server.url, flush=True)
        sys.stdin.read()


# ---------------------------------------------------------------- the client side

def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def new_client(url: str) -> tuple[httpx.AsyncClient, asyncio.Future[AiClient]]:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200,
                                                 max_keepalive_connections=200), timeout=60)
    return http, asyncio.ensure_future(AiClient.create(f"openai/{MODEL}", api_key="sk-bench",
                                                       base_url=f"{url}/v1", http_client=http))


async def one_stream(client: AiClient, n: int) -> tuple[str, str, str]:
    tag = f"stream-{n}"
    parts: list[str] = []
    stream = client.chat().user(tag).stream()
    async with stream:
        async for event in stream:
            if event.is_content_delta:
                parts.append(event.as_content_delta.text)
    return tag, "".join(parts), stream.response.content


async def streams_phase(url: str, count: int) -> tuple[float, int, list[str]]:
    """Run *count* concurrent streams; (wall seconds, streams checked, problems)."""
    http, pending = new_client(url)
    client = await pending
    async with http:
        await one_stream(client, -1)  # warm: manifest load and compile
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, n) for n in range(count)),
                                       return_exceptions=True)
        wall = time.perf_counter() - started
    problems = []
    for n, result in enumerate(results):
        if isinstance(result, BaseException):
            problems.append(f"stream-{n}: {type(result).__name__}: {result}")
            continue
        tag, deltas, content = result
        expected = stream_text(tag)
        if deltas != expected or content != expected:
            problems.append(f"{tag}: got {deltas[:60]!r} / {content[:60]!r}, "
                            f"expected {expected[:60]!r}")
    return wall, count - len(problems), problems


async def calls_phase(url: str, count: int) -> tuple[float, list[tuple[str, int, int]]]:
    """*count* sequential calls; memory (tracemalloc current, RSS) at start, 1,000, end."""
    http, pending = new_client(url)
    client = await pending
    marks: list[tuple[str, int, int]] = []

    def mark(label: str) -> None:
        gc.collect()
        marks.append((label, tracemalloc.get_traced_memory()[0], rss_kib()))

    async with http:
        await client.chat().user("call-warm").execute()
        mark("start")
        started = time.perf_counter()
        for n in range(count):
            resp = await client.chat().user(f"call-{n}").execute()
            if resp.content != f"answer to call-{n}":
                raise SystemExit(f"call {n}: wrong answer {resp.content!r}")
            if n + 1 == min(1000, count):
                mark(f"after {n + 1:,}")
        wall = time.perf_counter() - started
        mark(f"end ({count:,})")
    return wall, marks


async def burst_phase(url: str, count: int) -> list[tuple[str, float, int]]:
    """*count* concurrent calls and streams on a default client, and raw httpx's calls."""
    out: list[tuple[str, float, int]] = []
    async with await AiClient.create(f"openai/{MODEL}", api_key="sk-bench",
                                     base_url=f"{url}/v1", timeout=10) as client:
        await client.chat().user("burst-warm").execute()
        for label, work in (("engine, plain calls", lambda n: client.chat().user(
                f"burst-{n}").execute()), ("engine, streams", lambda n: one_stream(client, n))):
            started = time.perf_counter()
            results = await asyncio.gather(*(work(n) for n in range(count)),
                                           return_exceptions=True)
            failed = sum(isinstance(r, BaseException) for r in results)
            out.append((label, time.perf_counter() - started, failed))
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "raw"}]})
    async with httpx.AsyncClient(timeout=10) as raw:
        async def post(n: int) -> None:
            response = await raw.post(f"{url}/v1/chat/completions", content=body,
                                      headers={"content-type": "application/json"})
            response.raise_for_status()
        started = time.perf_counter()
        results = await asyncio.gather(*(post(n) for n in range(count)), return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        out.append(("raw httpx defaults, plain calls", time.perf_counter() - started, failed))
    return out


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit("the replay server did not start")
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    proc, url = start_server()
    try:
        wall, ok, problems = asyncio.run(streams_phase(url, args.streams))
        tracemalloc.start()
        traced_wall, traced_ok, traced_problems = asyncio.run(streams_phase(url, args.streams))
        peak = tracemalloc.get_traced_memory()[1]
        maxrss = maxrss_kib()
        tracemalloc.reset_peak()
        calls_wall, marks = asyncio.run(calls_phase(url, args.calls))
        tracemalloc.stop()
        burst = asyncio.run(burst_phase(url, args.burst))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)

    print(f"\n{args.streams:,} concurrent streams through one AiClient "
          "(max_connections=200, server in another process)")
    rows = [
        ("wall time", f"{wall:.2f} s"),
        ("streams/s", f"{args.streams / wall:,.0f}"),
        ("streams whole and unmixed", f"{ok:,} / {args.streams:,}"),
        ("wall time under tracemalloc", f"{traced_wall:.2f} s ({traced_ok:,} whole)"),
        ("tracemalloc peak", f"{peak / 2**20:.1f} MiB"),
        ("ru_maxrss (process peak)", f"{maxrss / 1024:.1f} MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>18}")
    print(f"\n{args.calls:,} sequential non-stream calls on one client (under tracemalloc): "
          f"{calls_wall:.2f} s, {args.calls / calls_wall:,.0f} calls/s")
    print(f"  {'point':<16} {'tracemalloc':>14} {'RSS':>12}")
    for label, current, rss in marks:
        print(f"  {label:<16} {current / 2**20:>10.2f} MiB {rss / 1024:>8.1f} MiB")
    first, last = marks[0], marks[-1]
    if len(marks) > 2:
        mid = marks[1]
        print(f"  growth {mid[0]} -> end: tracemalloc {(last[1] - mid[1]) / 1024:+.1f} KiB, "
              f"RSS {(last[2] - mid[2]) / 1024:+.1f} MiB")
    print(f"  growth start -> end: tracemalloc {(last[1] - first[1]) / 1024:+.1f} KiB, "
          f"RSS {(last[2] - first[2]) / 1024:+.1f} MiB")
    print(f"\n{args.burst:,} concurrent requests on one default client (timeout=10)")
    for label, seconds, failed in burst:
        print(f"  {label:<32} {seconds:>7.2f} s  {failed:>5,} failed")
    for problem in (problems + traced_problems)[:10]:
        print(f"PROBLEM {problem}")
    engine_failed = sum(failed for label, _, failed in burst if label.startswith("engine"))
    return 1 if problems or traced_problems or engine_failed else 0


if __name__ == "__main__":
    sys.exit(main())
