"""The mock server's own ceiling, measured with a raw-socket client (no HTTP library).

The client sends prepared request bytes and reads only as much of each answer as
HTTP framing needs (``Content-Length``, or the chunked terminator), so what it
measures is the server plus loopback, not a client. If the engine's rates stay
well below these, the server was not the bottleneck.

    python -m benchmarks.ceiling PORT [--chunks 5000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import time

from benchmarks.workloads import PROVIDERS, body


def request_bytes(provider: str, kind: str, port: int) -> bytes:
    spec = PROVIDERS[provider]
    content = body(provider, kind)
    headers = "".join(f"{k}: {v}\r\n" for k, v in spec["headers"].items())
    return (f"POST {spec['path']} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{headers}"
            f"content-length: {len(content)}\r\n\r\n").encode() + content


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads whole HTTP/1.1 answers off one socket: Content-Length or chunked."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def answer(self) -> int:
        """Read one answer; return its body's length in bytes (framing included if chunked)."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._more()
        head = self.buf[:end].lower()
        self.buf = self.buf[end + 4:]
        at = head.find(b"content-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15: stop if stop >= 0 else len(head)])
            while len(self.buf) < length:
                self._more()
            self.buf = self.buf[length:]
            return length
        # chunked: the server ends every stream with the last-chunk and an empty trailer.
        read = 0
        while (stop := self.buf.find(b"\r\n0\r\n\r\n")) < 0:
            read += max(0, len(self.buf) - 6)
            self.buf = self.buf[-6:]
            self._more()
        self.buf = self.buf[stop + 7:]
        return read + stop + 7


def sequential(port: int, n: int) -> float:
    """Calls per second over one keep-alive connection, one request at a time."""
    request = request_bytes("openai", "plain", port)
    with _connect(port) as sock:
        reader = Reader(sock)
        for _ in range(min(200, n)):
            sock.sendall(request)
            reader.answer()
        t0 = time.perf_counter()
        for _ in range(n):
            sock.sendall(request)
            reader.answer()
        return n / (time.perf_counter() - t0)


def stream(port: int, chunks: int, rounds: int = 5) -> float:
    """Deltas per second for one ``chunks``-delta stream (median of ``rounds``)."""
    request = request_bytes("openai", "stream", port)
    times = []
    with _connect(port) as sock:
        reader = Reader(sock)
        sock.sendall(request)
        reader.answer()
        for _ in range(rounds):
            t0 = time.perf_counter()
            sock.sendall(request)
            reader.answer()
            times.append(time.perf_counter() - t0)
    return chunks / statistics.median(times)


def concurrent(port: int, n: int, rounds: int = 5) -> float:
    """Wall seconds for ``n`` requests in flight at once on ``n`` open connections."""
    request = request_bytes("openai", "plain", port)
    socks = [_connect(port) for _ in range(n)]
    try:
        walls = []
        for _ in range(rounds + 1):
            sel = selectors.DefaultSelector()
            readers = {}
            t0 = time.perf_counter()
            for sock in socks:
                sock.sendall(request)
            for sock in socks:
                sock.setblocking(False)
                readers[sock] = Reader(sock)
                sel.register(sock, selectors.EVENT_READ)
            pending = len(socks)
            while pending:
                for key, _ in sel.select():
                    sock = key.fileobj  # type: ignore[assignment]
                    reader = readers[sock]
                    reader.buf += sock.recv(65536)
                    if _complete(reader.buf):
                        sel.unregister(sock)
                        pending -= 1
            walls.append(time.perf_counter() - t0)
            sel.close()
            for sock in socks:
                sock.setblocking(True)
        return statistics.median(walls[1:])
    finally:
        for sock in socks:
            sock.close()


def _complete(buf: bytes) -> bool:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].lower()
    at = head.find(b"content-length:")
    stop = head.find(b"\r\n", at)
    return len(buf) - end - 4 >= int(head[at + 15: stop if stop >= 0 else len(head)])


def measure(port: int, chunks: int, concurrency: int, calls: int = 3000) -> dict[str, float]:
    return {"calls_per_s": sequential(port, calls),
            "deltas_per_s": stream(port, chunks),
            "concurrent_wall": concurrent(port, concurrency)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.port, args.chunks, args.concurrency)))


if __name__ == "__main__":
    main()
