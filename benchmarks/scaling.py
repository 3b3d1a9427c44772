"""Does stream decoding stay linear in the size of the stream? Sans-I/O, in process.

    python -m benchmarks.scaling [--base 1000] [--repeats 5]

Feeds the engine's stream decoder (the OpenAI-shaped manifest) two bodies at
1x, 10x and 100x a base size, cut into 4 KiB reads as a socket delivers them,
and prints the median seconds and the time per unit at each size:

* ``text``: a stream of N content deltas (``--base`` 1,000: up to 100,000);
* ``tool``: one tool call whose arguments arrive in N fragments (``--base``
  500: up to 50,000), parsed once at the end.

Linear means the time per unit stays flat: the last column is each size's
time per unit over the smallest size's. Prints a Markdown table and writes
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from engine.manifest.load import load_manifest
from engine.protocol.decode import END, NEED_DATA, StreamDecoder

READ = 4096


def _frame(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def text_body(n: int) -> bytes:
    """N content deltas, a finish chunk, usage, [DONE]."""
    delta = [_frame({"choices": [{"index": 0, "delta": {"content": f"w{i % 10} "}}]})
             for i in range(n)]
    tail = [_frame({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            _frame({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n,
                                             "total_tokens": n + 5}}),
            b"data: [DONE]\n\n"]
    return b"".join(delta + tail)


def tool_body(n: int) -> bytes:
    """One tool call whose JSON arguments arrive in N fragments."""
    first = _frame({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "save", "arguments": '{"items": ['}}]}}]})
    parts = [_frame({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": f'{i % 10}{"," if i + 1 < n else ""}'}}]}}]})
        for i in range(n)]
    last = [_frame({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": "]}"}}]}}]}),
        _frame({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        b"data: [DONE]\n\n"]
    return b"".join([first, *parts, *last])


def decode(body: bytes) -> int:
    """Feed *body* in socket-sized reads; the number of events the user gets."""
    decoder = StreamDecoder(load_manifest("openai"), "gpt-4o")
    events = 0
    for start in range(0, len(body), READ):
        decoder.receive_data(body[start:start + READ])
        while decoder.next_event() not in (NEED_DATA, END):
            events += 1
    decoder.receive_data(b"")
    while decoder.next_event() not in (NEED_DATA, END):
        events += 1
    assert decoder.response.finish_reason in ("stop", "tool_calls")
    return events


def timed(make: Callable[[int], bytes], n: int, repeats: int) -> float:
    body = make(n)
    decode(body)  # warm
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decode(body)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=1000, help="deltas at 1x (text)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| body | size | units | median (ms) | µs per unit | per unit / 1x |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, make, base in (("text deltas", text_body, args.base),
                             ("tool-call fragments", tool_body, args.base // 2)):
        first = None
        for factor in (1, 10, 100):
            n = base * factor
            seconds = timed(make, n, args.repeats if factor < 100 else max(1, args.repeats // 2))
            per = seconds / n
            first = first or per
            print(f"| {name} | {factor}x | {n:,} | {seconds * 1e3:,.1f} | {per * 1e6:.2f} | "
                  f"{per / first:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
