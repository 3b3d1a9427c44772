"""``python -m engine.conformance.demo``: one piece of chat code, five providers, offline.

Starts a real HTTP server on 127.0.0.1 that answers like each provider from
recorded answers, then runs the *same* code against every provider by
switching only the model id: a plain call with stats, then a stream. No API
key and no network needed.

What each provider is asked and answered is data, not code: ``demo/demo.yaml``
under :func:`.data.data_dir` names, for each manifest id, the model, the
question, the recorded answer file (beside it) and that file's origin. The
server routes ``/<provider>/...`` to the provider's answers: a ``.json`` file
whole, a ``.sse`` or ``.ndjson`` file cut at its events. Exit status 0 when
every call succeeded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import AiClient, EngineError
from ..manifest.load import load_manifest
from .data import data_dir
from .fixture import split_events
from .server import RecordedRequest, ReplayServer, ScriptedResponse

__all__ = ["DEMO", "Turn", "load_demo", "main"]

DEMO = data_dir() / "demo" / "demo.yaml"
_TYPES = {".json": "application/json", ".sse": "text/event-stream",
          ".ndjson": "application/x-ndjson"}


@dataclass(frozen=True)
class Turn:
    """One call of the demo: who is asked what, and the answer that was recorded."""

    model: str  # provider/model
    ask: str
    answer: Path
    system: str | None = None
    tools: tuple[dict[str, Any], ...] = ()

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]


def _turn(provider: str, raw: dict[str, Any], here: Path) -> Turn:
    return Turn(f"{provider}/{raw['model']}", raw["ask"], here / raw["answer"],
                raw.get("system"), tuple(raw.get("tools") or ()))


def load_demo(path: Path = DEMO) -> dict[str, tuple[Turn, Turn]]:
    """``provider -> (plain turn, stream turn)``, in the file's order."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {name: (_turn(name, calls["plain"], path.parent),
                   _turn(name, calls["stream"], path.parent))
            for name, calls in data["providers"].items()}


def _recorded(file: Path) -> ScriptedResponse:
    body = file.read_bytes()
    headers = [("content-type", _TYPES[file.suffix])]
    chunks = [body] if file.suffix == ".json" else split_events(body)
    return ScriptedResponse(200, headers, chunks)


def router(demo: dict[str, tuple[Turn, Turn]]) -> Any:
    """The server's handler: ``/<provider>/...`` answered with that provider's recording."""

    def answer(request: RecordedRequest) -> ScriptedResponse:
        provider = request.url_path.split("/")[1]
        if provider not in demo:
            return ScriptedResponse.json({"error": f"no route for {request.path}"}, 404)
        wants_stream = request.json().get("stream") is True or "stream" in request.url_path
        return _recorded(demo[provider][1 if wants_stream else 0].answer)

    return answer


def short(text: str | None, width: int = 70) -> str:
    """*text* on one line, cut to *width* characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def base_url(server: ReplayServer, provider: str) -> str:
    """The server's address under ``/<provider>``, plus the manifest's own base path."""
    return f"{server.url}/{provider}" + urlsplit(load_manifest(provider).base_url).path.rstrip("/")


def _chat(client: AiClient, turn: Turn) -> Any:
    chat = client.chat()
    if turn.system:
        chat.system(turn.system)
    chat.user(turn.ask).max_tokens(300)
    if turn.tools:
        chat.tools(list(turn.tools))
    return chat


async def plain(turn: Turn, url: str) -> None:
    """The application code, identical for every provider: one call, with stats."""
    async with await AiClient.create(turn.model, api_key="demo-key", base_url=url) as client:
        resp, stats = await _chat(client, turn).execute_with_stats()
    print(f"  plain   {turn.model}: {short(turn.ask, 60)!r}")
    print(f"          {short(resp.content)!r}")
    print(f"          finish={resp.finish_reason} tokens={stats.prompt_tokens}+"
          f"{stats.completion_tokens}={stats.total_tokens} latency={stats.latency_ms:.1f} ms")


async def stream(turn: Turn, url: str) -> None:
    """The same code, streamed: count the deltas, then read the assembled answer."""
    async with await AiClient.create(turn.model, api_key="demo-key", base_url=url) as client:
        handle = _chat(client, turn).stream()
        deltas = 0
        async with handle:
            async for event in handle:
                deltas += event.is_content_delta or event.is_thinking_delta
    final = handle.response
    print(f"  stream  {turn.model}: {short(turn.ask, 60)!r}")
    print(f"          {short(final.content)!r}")
    if final.thinking:
        print(f"          thinking {short(final.thinking, 60)!r}")
    for call in final.tool_calls:
        print(f"          tool call {call.name}({json.dumps(call.arguments)})")
    ttft = f"{handle.stats.ttft_ms:.1f} ms" if handle.stats.ttft_ms is not None else "-"
    print(f"          finish={final.finish_reason} deltas={deltas} "
          f"tokens={final.usage.total_tokens} ttft={ttft}")


async def main() -> int:
    demo = load_demo()
    with ReplayServer(router(demo)) as server:
        print(f"Recorded provider answers served on {server.url}\n")
        for provider, (first, second) in demo.items():
            print(provider)
            try:
                await plain(first, base_url(server, provider))
                await stream(second, base_url(server, provider))
            except EngineError as exc:
                print(f"  error: {exc}")
                return 1
            print()
        print(f"{len(server.requests)} requests answered; same code, "
              f"{len(demo)} providers.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
