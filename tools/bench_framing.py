"""Throughput benchmark of engine.protocol.framing (not a test).

Builds ~20 MB bodies by replicating recorded streams, feeds them in 4 KiB
chunks and prints MB/s and frames/s, best of N runs:

* sse: our framer + json.loads of every frame's data (except ``[DONE]``),
  against a baseline of httpx's line decoder (what ``Response.iter_lines()``
  uses) + json.loads of every ``data: `` line;
* eventstream: the replicated binary recording through our framer + json.loads;
* ndjson: generated chat-style lines through our framer + json.loads, against
  the same httpx line decoder baseline.

Run: ``.venv/bin/python tools/bench_framing.py [--mb 20] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.protocol.framing import make_framer  # noqa: E402

REC = ROOT / "conformance" / "recordings"
SSE_SOURCES = ("openai_chat_stream_toolcall.sse", "anthropic_stream_thinking_padded.sse")
BIN_SOURCE = "bedrock_converse_stream_nova_tooluse.bin"
CHUNK = 4096


def replicate(unit: bytes, target: int) -> bytes:
    return unit * max(1, target // len(unit))


def chunks(body: bytes, size: int = CHUNK) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def ndjson_unit() -> bytes:
    words = ["The", " capital", " of", " France", " is", " Paris", " — ", "巴黎", " 🗼", "."]
    lines = [
        json.dumps({"model": "m", "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": w}, "done": False},
                   ensure_ascii=False)
        for w in words
    ]
    lines.append(json.dumps({"model": "m", "message": {"role": "assistant", "content": ""},
                             "done": True, "done_reason": "stop", "eval_count": 10}))
    return ("\n".join(lines) + "\n").encode("utf-8")


def ours(name: str, parts: list[bytes]) -> int:
    framer = make_framer(name)
    count = 0
    loads = json.loads
    for part in parts:
        for frame in framer.feed(part):
            if frame.data != "[DONE]":
                loads(frame.data)
            count += 1
    for frame in framer.close():
        if frame.data != "[DONE]":
            loads(frame.data)
        count += 1
    return count


def httpx_lines(parts: list[bytes]) -> Iterator[str]:
    """Lines the way ``httpx.Response.iter_lines()`` produces them."""
    try:
        from httpx._decoders import LineDecoder
    except ImportError:  # pragma: no cover - other httpx versions
        import httpx

        yield from httpx.Response(200, content=iter(parts)).iter_lines()
        return
    text = codecs.getincrementaldecoder("utf-8")()
    lines = LineDecoder()
    for part in parts:
        decoded = text.decode(part)
        if decoded:
            yield from lines.decode(decoded)
    yield from lines.flush()


def baseline_sse(parts: list[bytes]) -> int:
    count = 0
    loads = json.loads
    for line in httpx_lines(parts):
        if line.startswith("data: "):
            payload = line[6:]
            if payload != "[DONE]":
                loads(payload)
            count += 1
    return count


def baseline_ndjson(parts: list[bytes]) -> int:
    count = 0
    loads = json.loads
    for line in httpx_lines(parts):
        if line.strip():
            loads(line)
            count += 1
    return count


def best_of(fns: list[Callable[[list[bytes]], int]], parts: list[bytes],
            runs: int) -> list[tuple[float, int]]:
    """Best time and frame count of each function, runs interleaved to share machine noise."""
    times: list[list[float]] = [[] for _ in fns]
    counts = [0] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            counts[i] = fn(parts)
            times[i].append(time.perf_counter() - start)
    return [(min(t), c) for t, c in zip(times, counts, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description="framing throughput benchmark")
    parser.add_argument("--mb", type=float, default=20.0, help="body size in MB")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (best is kept)")
    args = parser.parse_args()
    target = int(args.mb * 1_000_000)

    sse = chunks(replicate(b"".join((REC / n).read_bytes() for n in SSE_SOURCES), target))
    binary = chunks(replicate((REC / BIN_SOURCE).read_bytes(), target))
    nd = chunks(replicate(ndjson_unit(), target))
    cases: list[tuple[str, list[bytes], list[Callable[[list[bytes]], int]]]] = [
        ("sse", sse, [lambda p: ours("sse", p), baseline_sse]),
        ("eventstream", binary, [lambda p: ours("eventstream", p)]),
        ("ndjson", nd, [lambda p: ours("ndjson", p), baseline_ndjson]),
    ]
    print(f"{CHUNK} B chunks, best of {args.runs} interleaved runs, json.loads of every frame")
    print(f"{'format':<12} {'impl':<6} {'MB':>5} {'frames':>7} {'MB/s':>6} {'frames/s':>9} "
          f"{'ours/httpx':>10}")
    for fmt, parts, fns in cases:
        size = sum(map(len, parts)) / 1e6
        results = best_of(fns, parts, args.runs)
        for impl, (seconds, count) in zip(("ours", "httpx"), results, strict=False):
            ratio = f"{results[1][0] / results[0][0]:.2f}" if impl == "httpx" else ""
            print(f"{fmt:<12} {impl:<6} {size:>5.1f} {count:>7} {size / seconds:>6.1f} "
                  f"{count / seconds:>9.0f} {ratio:>10}")


if __name__ == "__main__":
    main()
