"""Record a live exchange through the engine and write it as a conformance fixture.

``tools/record MODEL --scenario S (--user TEXT | --messages FILE) [...] --out FILE``
performs one real request through :class:`engine.AiClient` (the key comes
from the manifest's environment variables), captures the exact request and
every body read the client made (:func:`engine.io.transport.capturing_client`),
and writes a fixture. ``--messages`` takes a JSON list of messages in the
shape of :meth:`engine.Message.from_dict` (an assistant turn with
``tool_calls``, a ``tool`` result), so every scenario can be recorded;
``--tools`` a JSON list of tools.

Nothing is written unless the provider really answered: when no HTTP
response came back (connection refused, no key, a timeout) the recorder
prints the engine's error and exits 1. Secrets are redacted: the key becomes
``{api_key}`` wherever it appears in the request, cookies and response
headers other than ``content-type``, ``retry-after`` and those the manifest's
error rules read are dropped, and every ``--redact`` value (account ids,
resource names in URLs) becomes ``<redacted>``. Before writing, the file is
searched for the key (plain, URL-encoded, base64) and for every redacted
value; if any is still there the recorder refuses to write (exit 2). The
fixture names no local identity (no user or host name of the recording
machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import AiClient, EngineError, Message
from ..client import split_model
from ..io.transport import Capture, capturing_client
from ..manifest.load import load_manifest
from ..manifest.model import Manifest
from .data import runner_command
from .fixture import SCENARIOS

__all__ = ["Capture", "LeakError", "NoAnswerError", "build_fixture", "main", "record"]

# Request headers that say nothing about the protocol (httpx adds them).
_TRANSPORT_HEADERS = {"host", "content-length", "accept", "accept-encoding", "connection",
                      "user-agent", "cookie"}
# Response headers always worth keeping; the manifest's error rules add theirs.
_ANSWER_HEADERS = frozenset({"content-type", "retry-after"})


class LeakError(Exception):
    """The fixture would contain a secret; nothing was written."""


class NoAnswerError(Exception):
    """No HTTP response came back, so there is nothing to record; nothing was written."""


def answer_headers(manifest: Manifest) -> frozenset[str]:
    """The response headers a fixture keeps: the generic ones and those *manifest* reads."""
    errors = manifest.errors
    named = {name.lower() for rule in errors.rules for name, _ in rule.headers}
    named |= {hint.header.lower() for hint in errors.retry_after if hint.header}
    return _ANSWER_HEADERS | named


def _json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path}: {exc}") from None


def _messages(args: argparse.Namespace) -> list[dict[str, Any]]:
    """--system, then the --messages file, then the --user/--assistant turns."""
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.messages:
        given = _json_file(args.messages, "--messages")
        if not isinstance(given, list) or not all(isinstance(m, dict) for m in given):
            raise ValueError(f"--messages {args.messages}: expected a JSON list of objects")
        for index, message in enumerate(given):
            try:
                Message.from_dict(message)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"--messages {args.messages}: message {index}: {exc}") from None
        messages += given
    for index, text in enumerate(args.user):
        if index and index - 1 < len(args.assistant):
            messages.append({"role": "assistant", "content": args.assistant[index - 1]})
        messages.append({"role": "user", "content": text})
    return messages


def _request_dict(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"messages": _messages(args)}
    params = {k: v for k, v in (("temperature", args.temperature),
                                ("max_tokens", args.max_tokens), ("top_p", args.top_p),
                                ("stop", args.stop)) if v is not None}
    if params:
        request["params"] = params
    if args.tools:
        request["tools"] = _json_file(args.tools, "--tools")
    if args.tool_choice:
        request["tool_choice"] = args.tool_choice
    if args.stream:
        request["stream"] = True
    return request


async def record(model_id: str, request: dict[str, Any], *, api_key: str | None = None,
                 base_url: str | None = None) -> tuple[Capture, dict[str, Any], str]:
    """Perform the request; return the capture, the derived expectations, and the key used.

    Raise :class:`NoAnswerError` (with the engine's error) when no HTTP
    response came back.
    """
    capture = Capture()
    provider, _ = split_model(model_id)
    manifest = load_manifest(provider)
    key = api_key or next((os.environ[n] for n in manifest.auth.env if os.environ.get(n)), "")
    async with capturing_client(capture) as http, await AiClient.create(
            model_id, api_key=key or None, base_url=base_url, http_client=http,
            max_retries=0) as client:
        chat = client.chat().messages([Message.from_dict(m) for m in request["messages"]])
        for name, value in (request.get("params") or {}).items():
            getattr(chat, name)(value)
        if request.get("tools"):
            chat.tools(request["tools"])
        if request.get("tool_choice"):
            chat.tool_choice(request["tool_choice"])
        expect, error = await _run(chat, bool(request.get("stream")))
    if not capture.status:
        raise NoAnswerError(_no_answer(capture, error))
    return capture, expect, key


def _no_answer(capture: Capture, error: EngineError | None) -> str:
    why = str(error) if error is not None else "no error was raised"
    if not capture.method:
        return f"no request was sent: {why}"
    url = urllib.parse.urlsplit(capture.url)
    return f"no answer from {url.scheme}://{url.netloc}: {why}"


async def _run(chat: Any, stream: bool) -> tuple[dict[str, Any], EngineError | None]:
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
        return expect, exc
    for call in expect.get("tool_calls", []):
        call.pop("id", None)  # ids are the provider's; assert the name and arguments
    return expect, None


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
    """The fixture for a capture, with every secret redacted (not yet leak-checked).

    The origin names the tool, the time and the provider's host; a person
    only when *recorded_by* is given (nothing is read from the machine).
    """
    provider, model = split_model(model_id)
    url = urllib.parse.urlsplit(capture.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = {k.lower(): _scrub(v, key, redact) for k, v in capture.headers
               if k.lower() not in _TRANSPORT_HEADERS}
    keep = answer_headers(load_manifest(provider))
    answer: dict[str, Any] = {"status": capture.status, "headers": {
        k.lower(): v for k, v in capture.response_headers if k.lower() in keep}}
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
    by = f" by {recorded_by}" if recorded_by else ""
    fixture = {
        "fixture": 1,
        "provider": provider,
        "scenario": scenario,
        "model": model,
        "source": {"kind": "live-recording",
                   "origin": f"recorded{by} with tools/record on {when} from "
                             f"{url.scheme}://{url.hostname}",
                   "notes": notes},
        "request": request,
        "sent": {"method": capture.method, "path": _scrub(path, key, redact),
                 "headers": headers, "body": json.loads(capture.body) if capture.body else None},
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/record", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="provider/model")
    parser.add_argument("--scenario", required=True, help=f"one of {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, required=True, help="the fixture file to write")
    parser.add_argument("--system", help="a system prompt, sent first")
    parser.add_argument("--messages", metavar="FILE",
                        help="a JSON list of messages ({role, content, tool_calls: [{id, name, "
                             "arguments}], tool_call_id}), sent after --system")
    parser.add_argument("--user", action="append", default=[],
                        help="a user turn, sent after --messages (repeat for more)")
    parser.add_argument("--assistant", action="append", default=[],
                        help="assistant turns between the --user turns")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--stop", action="append")
    parser.add_argument("--tools", metavar="FILE", help="a JSON file with a list of tools")
    parser.add_argument("--tool-choice")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--base-url", help="replace the manifest's base URL")
    parser.add_argument("--recorded-by", metavar="NAME",
                        help="who to name in the fixture's origin (default: nobody)")
    parser.add_argument("--redact", action="append", default=[],
                        help="another secret to remove (account id, resource name)")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"tools/record: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Record and write; 0 written, 1 no answer came back, 2 bad input or a leak."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.user and not args.messages:
        parser.error("give the conversation: --user TEXT and/or --messages FILE")
    try:
        request = _request_dict(args)
        capture, expect, key = asyncio.run(record(args.model, request, base_url=args.base_url))
        fixture = build_fixture(capture, expect, request, model_id=args.model,
                                scenario=args.scenario, key=key, redact=args.redact,
                                recorded_by=args.recorded_by)
        write_fixture(fixture, args.out, key, args.redact)
    except NoAnswerError as exc:
        return _fail(f"{exc}; nothing written", 1)
    except (LeakError, EngineError, ValueError) as exc:
        return _fail(str(exc), 2)
    print(f"wrote {args.out}: HTTP {capture.status}, {len(capture.chunks)} read(s); "
          f"review its 'expect' section, then run {runner_command()} -k "
          f"{fixture['provider']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
