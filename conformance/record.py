"""Record a live exchange through the engine and write it as a conformance fixture.

``tools/record MODEL --scenario S --user TEXT [...] --out FILE`` performs one
real request through :class:`engine.AiClient` (the key comes from ``api_key``
or the manifest's environment variables), captures the exact request and
every body read the client made, and writes a fixture. Secrets are redacted:
the key becomes ``{api_key}`` wherever it appears in the request, cookies and
unknown response headers are dropped, and every ``--redact`` value (account
ids, resource names in URLs) becomes ``<redacted>``. Before writing, the file
is searched for the key (plain, URL-encoded, base64) and for every redacted
value; if any is still there the recorder refuses to write.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import getpass
import json
import os
import sys
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from engine import AiClient, EngineError, Message
from engine.client import split_model
from engine.manifest import load_manifest

from .fixture import SCENARIOS

__all__ = ["Capture", "LeakError", "build_fixture", "main", "record"]

# Request headers that say nothing about the protocol (httpx adds them).
_TRANSPORT_HEADERS = {"host", "content-length", "accept", "accept-encoding", "connection",
                      "user-agent", "cookie"}
# Response headers worth keeping in a fixture; everything else may identify an account.
_ANSWER_HEADERS = {"content-type", "retry-after", "retry-after-ms", "x-should-retry"}


class LeakError(Exception):
    """The fixture would contain a secret; nothing was written."""


@dataclass
class Capture:
    """What went over the wire for the last request."""

    method: str = ""
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)


class _Recording(httpx.AsyncBaseTransport):
    """Wraps a transport; asks for identity encoding so recorded bytes replay as-is."""

    def __init__(self, inner: httpx.AsyncBaseTransport, capture: Capture) -> None:
        self._inner = inner
        self._capture = capture

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["accept-encoding"] = "identity"
        body = await request.aread()
        cap = self._capture
        cap.method, cap.url, cap.body = request.method, str(request.url), body
        cap.headers = list(request.headers.multi_items())
        response = await self._inner.handle_async_request(request)
        cap.status = response.status_code
        cap.response_headers = list(response.headers.multi_items())
        cap.chunks = []
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Tee(response.stream, cap.chunks),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Tee(httpx.AsyncByteStream):
    def __init__(self, inner: Any, sink: list[bytes]) -> None:
        self._inner = inner
        self._sink = sink

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            if chunk:
                self._sink.append(bytes(chunk))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _request_dict(args: argparse.Namespace) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    for index, text in enumerate(args.user):
        if index and index - 1 < len(args.assistant):
            messages.append({"role": "assistant", "content": args.assistant[index - 1]})
        messages.append({"role": "user", "content": text})
    request: dict[str, Any] = {"messages": messages}
    params = {k: v for k, v in (("temperature", args.temperature),
                                ("max_tokens", args.max_tokens), ("top_p", args.top_p),
                                ("stop", args.stop)) if v is not None}
    if params:
        request["params"] = params
    if args.tools:
        request["tools"] = json.loads(Path(args.tools).read_text())
    if args.tool_choice:
        request["tool_choice"] = args.tool_choice
    if args.stream:
        request["stream"] = True
    return request


async def record(model_id: str, request: dict[str, Any], *, api_key: str | None = None,
                 base_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None
                 ) -> tuple[Capture, dict[str, Any], str]:
    """Perform the request; return the capture, the derived expectations, and the key used."""
    capture = Capture()
    inner = transport or httpx.AsyncHTTPTransport()
    http = httpx.AsyncClient(transport=_Recording(inner, capture), timeout=120.0)
    provider, _ = split_model(model_id)
    manifest = load_manifest(provider)
    key = api_key or next((os.environ[n] for n in manifest.auth.env if os.environ.get(n)), "")
    async with http, await AiClient.create(model_id, api_key=key or None, base_url=base_url,
                                           http_client=http, max_retries=0) as client:
        chat = client.chat().messages([Message.from_dict(m) for m in request["messages"]])
        for name, value in (request.get("params") or {}).items():
            getattr(chat, name)(value)
        if request.get("tools"):
            chat.tools(request["tools"])
        if request.get("tool_choice"):
            chat.tool_choice(request["tool_choice"])
        expect = await _run(chat, bool(request.get("stream")))
    return capture, expect, key


async def _run(chat: Any, stream: bool) -> dict[str, Any]:
    from .runner import rle, summarize

    types: list[str] = []
    try:
        if stream:
            handle = chat.stream()
            async with handle:
                async for event in handle:
                    types.append(event.type)
            expect = summarize(handle.response)
            expect["events"] = rle(types)
        else:
            expect = summarize(await chat.execute())
    except EngineError as exc:
        expect = {"error": {"kind": exc.kind, "status": exc.status, "retryable": exc.retryable,
                            "retry_after": exc.retry_after}}
        if types:
            expect["events"] = rle(types)
    for call in expect.get("tool_calls", []):
        call.pop("id", None)  # ids are the provider's; assert the name and arguments
    return expect


def _secret_forms(key: str, redact: Sequence[str]) -> list[bytes]:
    forms = []
    for secret in ([key] if key else []) + list(redact):
        forms += [secret.encode(), urllib.parse.quote(secret, safe="").encode()]
    return forms


def _scrub_chunks(chunks: Sequence[bytes], key: str, redact: Sequence[str]) -> list[bytes]:
    """The reads as recorded, unless a secret is in the joined body (even across reads):
    then the redacted body as one read."""
    body = b"".join(chunks)
    forms = _secret_forms(key, redact)
    if not any(form in body for form in forms):
        return list(chunks)
    for form in sorted(forms, key=len, reverse=True):
        body = body.replace(form, b"<redacted>")
    return [body]


def _scrub(text: str, key: str, redact: Sequence[str]) -> str:
    if key:
        text = text.replace(key, "{api_key}").replace(urllib.parse.quote(key, safe=""),
                                                      "{api_key}")
    for value in redact:
        text = text.replace(value, "<redacted>")
    return text


def build_fixture(capture: Capture, expect: dict[str, Any], request: dict[str, Any], *,
                  model_id: str, scenario: str, key: str, redact: Sequence[str] = (),
                  recorded_by: str | None = None) -> dict[str, Any]:
    """The fixture for a capture, with every secret redacted (not yet leak-checked)."""
    provider, model = split_model(model_id)
    url = urllib.parse.urlsplit(capture.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = {k.lower(): _scrub(v, key, redact) for k, v in capture.headers
               if k.lower() not in _TRANSPORT_HEADERS}
    answer_headers = {k.lower(): v for k, v in capture.response_headers
                      if k.lower() in _ANSWER_HEADERS}
    body: Any = json.loads(capture.body) if capture.body else None
    answer: dict[str, Any] = {"status": capture.status, "headers": answer_headers}
    chunks = _scrub_chunks(capture.chunks, key, redact)
    notes = "chunks are the reads the client made; review 'expect'"
    if len(chunks) != len(capture.chunks):
        notes = ("the answer echoed a secret, so it was redacted and kept as one chunk (its "
                 "read boundaries are lost); review 'expect'")
    try:
        answer["chunks"] = [c.decode("utf-8") for c in chunks]
    except UnicodeDecodeError:
        answer["chunks_base64"] = [base64.b64encode(c).decode() for c in chunks]
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    who = recorded_by or getpass.getuser()
    fixture = {
        "fixture": 1,
        "provider": provider,
        "scenario": scenario,
        "model": model,
        "source": {"kind": "live-recording",
                   "origin": f"recorded by {who} with tools/record on {when} from "
                             f"{url.scheme}://{url.hostname}",
                   "notes": notes},
        "request": request,
        "sent": {"method": capture.method, "path": _scrub(path, key, redact),
                 "headers": headers, "body": body},
        "answer": answer,
        "expect": expect,
    }
    text = _scrub(json.dumps(fixture, ensure_ascii=False), key, redact)
    return dict(json.loads(text))


def leaks(text: str, key: str, redact: Sequence[str] = ()) -> list[str]:
    """Every form in which a secret still appears in *text*."""
    found = []
    for secret in ([key] if key else []) + list(redact):
        forms = {secret, urllib.parse.quote(secret, safe=""),
                 base64.b64encode(secret.encode()).decode().rstrip("="),
                 base64.b64encode(f":{secret}".encode()).decode().rstrip("=")}
        hidden = "key" if secret == key else "a --redact value"
        found += [f"{hidden} appears ({'plain' if f == secret else 'encoded'})"
                  for f in forms if f and f in text]
    return found


def _answer_bytes(fixture: dict[str, Any]) -> bytes:
    answer = fixture.get("answer") or {}
    if "chunks_base64" in answer:
        return b"".join(base64.b64decode(c) for c in answer["chunks_base64"])
    return "".join(answer.get("chunks") or []).encode("utf-8")


def write_fixture(fixture: dict[str, Any], out: Path, key: str,
                  redact: Sequence[str] = ()) -> None:
    """Write *fixture* as YAML unless a secret would leak (then raise LeakError).

    Checked: the file's text, and the answer's bytes joined and decoded (a
    secret split across reads or hidden in base64 at any alignment).
    """
    text = yaml.safe_dump(fixture, sort_keys=False, allow_unicode=True, width=100)
    joined = _answer_bytes(fixture).decode("utf-8", "replace")
    problems = leaks(text, key, redact) + leaks(joined, key, redact)
    if problems:
        raise LeakError("refusing to write the fixture: " + "; ".join(sorted(set(problems))))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/record", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="provider/model")
    parser.add_argument("--scenario", required=True, help=f"one of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, required=True, help="the fixture file to write")
    parser.add_argument("--system")
    parser.add_argument("--user", action="append", required=True)
    parser.add_argument("--assistant", action="append", default=[],
                        help="assistant turns between the --user turns")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--stop", action="append")
    parser.add_argument("--tools", help="a JSON file with a list of tools")
    parser.add_argument("--tool-choice")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--base-url", help="replace the manifest's base URL")
    parser.add_argument("--redact", action="append", default=[],
                        help="another secret to remove (account id, resource name)")
    args = parser.parse_args(argv)
    request = _request_dict(args)
    try:
        capture, expect, key = asyncio.run(record(args.model, request, base_url=args.base_url))
        if not capture.method:
            print("tools/record: no request was sent", file=sys.stderr)
            return 1
        fixture = build_fixture(capture, expect, request, model_id=args.model,
                                scenario=args.scenario, key=key, redact=args.redact)
        write_fixture(fixture, args.out, key, args.redact)
    except (LeakError, EngineError) as exc:
        print(f"tools/record: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: HTTP {capture.status}, {len(capture.chunks)} read(s); "
          "review its 'expect' section, then run python -m conformance -k "
          f"{fixture['provider']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
