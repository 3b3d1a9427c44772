"""Throughput benchmark of engine.framing (not a test).

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

from engine.framing import make_framer  # noqa: E402

REC = ROOT / "tests" / "data" / "recordings"
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


def best(fn: Callable[[list[bytes]], int], parts: list[bytes], runs: int) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(runs):
        start = time.perf_counter()
        count = fn(parts)
        times.append(time.perf_counter() - start)
    return min(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description="framing throughput benchmark")
    parser.add_argument("--mb", type=float, default=20.0, help="body size in MB")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (best is kept)")
    args = parser.parse_args()
    target = int(args.mb * 1_000_000)

    sse = chunks(replicate(b"".join((REC / n).read_bytes() for n in SSE_SOURCES), target))
    binary = chunks(replicate((REC / BIN_SOURCE).read_bytes(), target))
    nd = chunks(replicate(ndjson_unit(), target))
    cases: list[tuple[str, str, list[bytes], Callable[[list[bytes]], int]]] = [
        ("sse", "ours", sse, lambda p: ours("sse", p)),
        ("sse", "httpx", sse, baseline_sse),
        ("eventstream", "ours", binary, lambda p: ours("eventstream", p)),
        ("ndjson", "ours", nd, lambda p: ours("ndjson", p)),
        ("ndjson", "httpx", nd, baseline_ndjson),
    ]
    print(f"chunks of {CHUNK} B, best of {args.runs} runs, json.loads of every frame included")
    print(f"{'format':<12} {'impl':<6} {'MB':>6} {'frames':>8} {'MB/s':>7} {'frames/s':>10} "
          f"{'ours/httpx':>10}")
    ours_speed: dict[str, float] = {}
    for fmt, impl, parts, fn in cases:
        seconds, count = best(fn, parts, args.runs)
        size = sum(map(len, parts)) / 1e6
        ratio = ""
        if impl == "ours":
            ours_speed[fmt] = size / seconds
        else:
            ratio = f"{ours_speed[fmt] / (size / seconds):.2f}"
        print(f"{fmt:<12} {impl:<6} {size:>6.1f} {count:>8} {size / seconds:>7.1f} "
              f"{count / seconds:>10.0f} {ratio:>10}")


if __name__ == "__main__":
    main()
