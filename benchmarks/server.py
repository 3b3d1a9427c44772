"""A fast mock LLM provider on 127.0.0.1 for the benchmarks: OpenAI and Anthropic shapes.

One asyncio process, no framework: every answer is built once at start-up and
written as prepared bytes, so a request costs the server a header split, a
``Content-Length`` read and one ``write``. It answers

* ``POST /v1/chat/completions`` (OpenAI chat completions) and
  ``POST /v1/messages`` (Anthropic messages): one JSON document, or, when the
  body asks for ``"stream": true``, an SSE stream of ``--chunks`` text deltas
  (chunked transfer coding, as the providers send it; the events before the
  first delta are written first, then the rest in one write);
* ``GET /_bodies``: the distinct request bodies seen per route and user-agent (the first 8),
  so the harness can check that the engine and raw httpx sent the same bytes.

Connections are HTTP/1.1 keep-alive; request bodies must carry ``Content-Length``.

    python -m benchmarks.server [--port 0] [--chunks 5000]

prints ``PORT <n>`` on stdout once listening and runs until stdin closes or
it gets SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import stat
import sys

OPENAI_PATH = b"/v1/chat/completions"
ANTHROPIC_PATH = b"/v1/messages"
TEXT = "The capital of France is Paris."
PIECE = "tok "  # every stream delta: the streamed text is PIECE * chunks


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _plain(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def openai_plain() -> bytes:
    return _plain(_dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": TEXT, "refusal": None}}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22}}))


def anthropic_plain() -> bytes:
    return _plain(_dumps({
        "id": "msg_bench", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 14, "output_tokens": 8}}))


def openai_stream(chunks: int) -> tuple[bytes, bytes]:
    """(first write: headers and events up to the first delta, second write: the rest)."""
    def event(delta: dict[str, object], finish: str | None = None) -> bytes:
        return b"data: " + _dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}]}) + b"\n\n"
    first = event({"role": "assistant", "content": ""}) + event({"content": PIECE})
    delta = event({"content": PIECE})
    usage = b"data: " + _dumps({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
        "model": "gpt-4o-mini", "choices": [],
        "usage": {"prompt_tokens": 14, "completion_tokens": chunks,
                  "total_tokens": 14 + chunks}}) + b"\n\n"
    rest = delta * (chunks - 1) + event({}, "stop") + usage + b"data: [DONE]\n\n"
    return STREAM_HEAD + _chunk(first), _chunk(rest) + b"0\r\n\r\n"


def anthropic_stream(chunks: int) -> tuple[bytes, bytes]:
    def event(name: str, data: dict[str, object]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"
    delta = event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": PIECE}})
    first = event("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 14, "output_tokens": 1}}}) + event(
        "content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}) + delta
    rest = (delta * (chunks - 1)
            + event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn",
                                                "stop_sequence": None},
                                      "usage": {"output_tokens": chunks}})
            + event("message_stop", {"type": "message_stop"}))
    return STREAM_HEAD + _chunk(first), _chunk(rest) + b"0\r\n\r\n"


NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
             b"content-length: 9\r\n\r\nnot found")
BAD = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
       b"content-length: 11\r\nconnection: close\r\n\r\nbad request")


def _agent(head: bytes) -> str:
    """The user-agent's product name (``engine``, ``python-httpx``, ``OpenAI``...)."""
    lower = head.lower()
    at = lower.find(b"\r\nuser-agent:")
    if at < 0:
        return "-"
    stop = lower.find(b"\r\n", at + 2)
    value = head[at + 13: stop if stop >= 0 else len(head)].strip()
    return value.split(b"/", 1)[0].decode("latin-1") or "-"


class Answers:
    """Every answer, prepared once, and the distinct bodies seen per route."""

    def __init__(self, chunks: int) -> None:
        self.plain = {OPENAI_PATH: openai_plain(), ANTHROPIC_PATH: anthropic_plain()}
        self.stream = {OPENAI_PATH: openai_stream(chunks),
                       ANTHROPIC_PATH: anthropic_stream(chunks)}
        self.bodies: dict[str, list[str]] = {}

    def note(self, key: str, body: bytes) -> None:
        seen = self.bodies.setdefault(key, [])
        if len(seen) < 8:
            text = body.decode("utf-8", "replace")
            if text not in seen:
                seen.append(text)


class Http(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                try:
                    length = int(head[at + 17: stop if stop >= 0 else len(head)])
                except ValueError:
                    self._write(BAD)
                    self._close()
                    return
            elif b"\r\ntransfer-encoding:" in lower:
                self._write(BAD)
                self._close()
                return
            start = end + 4
            if len(self.buf) < start + length:
                return
            body = self.buf[start:start + length]
            self.buf = self.buf[start + length:]
            self.respond(head, body)

    def respond(self, head: bytes, body: bytes) -> None:
        line_end = head.find(b"\r\n")
        request_line = head[:line_end if line_end >= 0 else len(head)].split(b" ")
        if len(request_line) != 3:
            self._write(BAD)
            self._close()
            return
        method, target = request_line[0], request_line[1].split(b"?", 1)[0]
        answers = self.answers
        if method == b"GET" and target == b"/_bodies":
            self._write(_plain(_dumps(answers.bodies)))
            return
        if method != b"POST" or target not in answers.plain:
            self._write(NOT_FOUND)
            return
        streaming = False
        if b'"stream"' in body:
            try:
                streaming = json.loads(body).get("stream") is True
            except (ValueError, AttributeError):
                streaming = False
        answers.note(f"{target.decode()} {'stream' if streaming else 'plain'} {_agent(head)}", body)
        if streaming:
            first, rest = answers.stream[target]
            self._write(first)
            self._write(rest)
        else:
            self._write(answers.plain[target])

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, chunks: int) -> None:
    loop = asyncio.get_running_loop()
    answers = Answers(chunks)
    server = await loop.create_server(lambda: Http(answers), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # stdin closing (the parent went away) also stops the server, when stdin is a pipe.
    reader: asyncio.StreamReader | None = None
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        if reader is None:
            return
        while await reader.read(4096):
            pass
        done.set()

    watcher = asyncio.ensure_future(watch_stdin())
    await done.wait()
    watcher.cancel()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    asyncio.run(serve(args.port, args.chunks))


if __name__ == "__main__":
    main()
