"""The measured work, one exchange per client, run in a fresh process per measure.

Each client does the same exchange with the mock server a user would do:

* ``engine``: ``SyncAiClient``/``AiClient`` built from the manifest, ``.user("Hi")``,
  ``.execute()`` (the text read from ``resp.content``) or ``.stream()`` (the text
  deltas concatenated);
* ``httpx``: the same request bytes posted by hand (the bodies are the engine's, byte for
  byte; the server's ``/_bodies`` lets the harness check it), ``json.loads`` of the answer
  and the text picked out; for streams, ``iter_lines``, ``json.loads`` of every ``data:``
  line and the text deltas concatenated;
* ``sdk`` (the ``openai`` or ``anthropic`` package) and ``litellm``: the equivalent
  call, only when those packages are importable (``--sdks``).

    python -m benchmarks.workloads MEASURE CLIENT PROVIDER URL [--n N] [--chunks N]

prints one JSON object. Measures: ``create`` (seconds for one client construction),
``sequential`` (per-call seconds), ``stream`` (total and time to first content, seconds),
``concurrent`` (wall seconds for ``--n`` calls at once on one async client). ``cold_code``
and ``import_code`` give the ``python -c`` programs the harness times from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

KEY = "sk-bench"
PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {
        "model": "openai/gpt-4o-mini",
        "path": "/v1/chat/completions",
        "base": "/v1",
        "headers": {"content-type": "application/json", "authorization": f"Bearer {KEY}"},
        "plain": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        "stream": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                   "stream": True, "stream_options": {"include_usage": True}},
    },
    "anthropic": {
        "model": "anthropic/claude-sonnet-4-5-20250929",
        "path": "/v1/messages",
        "base": "",
        "headers": {"content-type": "application/json", "anthropic-version": "2023-06-01",
                    "x-api-key": KEY},
        "plain": {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64000,
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        "stream": {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64000,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                   "stream": True},
    },
}
# engine-aiohttp and aiohttp (the engine over its aiohttp transport, and raw aiohttp
# posting the same bytes) run the concurrent measure only.
CLIENTS = ("engine", "httpx", "sdk", "litellm", "engine-aiohttp", "aiohttp")


def body(provider: str, kind: str) -> bytes:
    """The request body the engine sends, as compact JSON in the manifest's key order."""
    return json.dumps(PROVIDERS[provider][kind], separators=(",", ":")).encode()


def plain_text(provider: str, data: dict[str, Any]) -> str:
    if provider == "openai":
        return str(data["choices"][0]["message"]["content"])
    return "".join(b["text"] for b in data["content"] if b["type"] == "text")


def line_text(provider: str, data: dict[str, Any]) -> str | None:
    """The text delta of one parsed SSE data line, if it carries one."""
    if provider == "openai":
        choices = data.get("choices")
        if choices:
            content = choices[0].get("delta", {}).get("content")
            return content if content else None
        return None
    if data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
        return str(data["delta"]["text"])
    return None


# -- cold process and import: whole programs, timed by the harness from outside ----------------

_COLD_PRELUDE = "import resource, sys\n"
_COLD_END = ("assert text\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


def cold_code(client: str, provider: str, url: str) -> str:
    """A program: import, create, one call, parse; prints its peak RSS (KiB)."""
    spec = PROVIDERS[provider]
    if client == "engine":
        call = (f"from engine import SyncAiClient\n"
                f"c = SyncAiClient.create({spec['model']!r}, api_key={KEY!r}, "
                f"base_url={url + spec['base']!r})\n"
                f"text = c.chat().user('Hi').execute().content\n")
    elif client == "httpx":
        pick = ("d['choices'][0]['message']['content']" if provider == "openai"
                else "''.join(b['text'] for b in d['content'] if b['type'] == 'text')")
        call = (f"import json, httpx\n"
                f"c = httpx.Client()\n"
                f"r = c.post({url + spec['path']!r}, content={body(provider, 'plain')!r}, "
                f"headers={spec['headers']!r})\n"
                f"r.raise_for_status()\n"
                f"d = json.loads(r.content)\n"
                f"text = {pick}\n")
    elif client == "sdk":
        call = _sdk_setup(provider, url) + f"text = {_sdk_call(provider)}\n"
    elif client == "litellm":
        call = (f"import litellm\n"
                f"text = litellm.completion(model={spec['model']!r}, api_key={KEY!r}, "
                f"api_base={url + spec['base']!r}, "
                f"messages=[{{'role': 'user', 'content': 'Hi'}}]"
                f"{', max_tokens=64000' if provider == 'anthropic' else ''})"
                f".choices[0].message.content\n")
    else:
        raise ValueError(client)
    return _COLD_PRELUDE + call + _COLD_END


def _sdk_setup(provider: str, url: str) -> str:
    if provider == "openai":
        return (f"import openai\nc = openai.OpenAI(api_key={KEY!r}, base_url={url + '/v1'!r}, "
                f"max_retries=0)\n")
    return (f"import anthropic\nc = anthropic.Anthropic(api_key={KEY!r}, base_url={url!r}, "
            f"max_retries=0)\n")


def _sdk_call(provider: str) -> str:
    if provider == "openai":
        return ("c.chat.completions.create(model='gpt-4o-mini', "
                "messages=[{'role': 'user', 'content': 'Hi'}]).choices[0].message.content")
    return ("''.join(b.text for b in c.messages.create(model='claude-sonnet-4-5-20250929', "
            "max_tokens=64000, timeout=600, messages=[{'role': 'user', 'content': "
            "[{'type': 'text', 'text': 'Hi'}]}]).content if b.type == 'text')")


IMPORTS = {
    "httpx": "import httpx",
    "engine": "import engine",
    "engine AiClient": "from engine import AiClient",
    "openai": "import openai",
    "anthropic": "import anthropic",
    "litellm": "import litellm",
}


def import_code(statement: str) -> str:
    """A program printing the seconds one import statement took and the peak RSS (KiB)."""
    return ("import time, resource\n"
            "t0 = time.perf_counter()\n"
            f"{statement}\n"
            "t = time.perf_counter() - t0\n"
            "print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


# -- in-process measures ----------------------------------------------------------------------

def make_sync(client: str, provider: str, url: str) -> Any:
    spec = PROVIDERS[provider]
    if client == "engine":
        from engine import SyncAiClient
        return SyncAiClient.create(spec["model"], api_key=KEY, base_url=url + spec["base"])
    if client == "httpx":
        import httpx
        return httpx.Client()
    if client == "sdk":
        namespace: dict[str, Any] = {}
        exec(_sdk_setup(provider, url), namespace)
        return namespace["c"]
    if client == "litellm":
        import litellm
        return litellm
    raise ValueError(client)


def make_async(client: str, provider: str, url: str) -> Any:
    spec = PROVIDERS[provider]
    if client == "engine":
        from engine import AiClient

        async def create() -> Any:
            return await AiClient.create(spec["model"], api_key=KEY, base_url=url + spec["base"])
        return create
    if client == "engine-aiohttp":
        from engine import AiClient

        async def create_on_aiohttp() -> Any:
            return await AiClient.create(spec["model"], api_key=KEY,
                                         base_url=url + spec["base"], transport="aiohttp")
        return create_on_aiohttp
    if client == "httpx":
        import httpx

        async def create_httpx() -> Any:
            return httpx.AsyncClient()
        return create_httpx
    if client == "aiohttp":
        import aiohttp

        async def create_aiohttp() -> Any:
            return aiohttp.ClientSession()
        return create_aiohttp
    if client == "sdk":
        if provider == "openai":
            import openai

            async def create_openai() -> Any:
                return openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1", max_retries=0)
            return create_openai
        import anthropic

        async def create_anthropic() -> Any:
            return anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)
        return create_anthropic
    if client == "litellm":
        import litellm

        async def create_litellm() -> Any:
            return litellm
        return create_litellm
    raise ValueError(client)


def sync_call(client: str, provider: str, url: str, c: Any) -> Callable[[], str]:
    spec = PROVIDERS[provider]
    if client == "engine":
        return lambda: c.chat().user("Hi").execute().content  # type: ignore[no-any-return]
    if client == "httpx":
        target, content, headers = url + spec["path"], body(provider, "plain"), spec["headers"]

        def raw() -> str:
            r = c.post(target, content=content, headers=headers)
            r.raise_for_status()
            return plain_text(provider, json.loads(r.content))
        return raw
    if client == "sdk":
        namespace = {"c": c}
        code = compile(_sdk_call(provider), "<sdk>", "eval")
        return lambda: eval(code, namespace)  # type: ignore[no-any-return]
    if client == "litellm":
        kwargs = _litellm_kwargs(provider, url)
        return lambda: c.completion(**kwargs).choices[0].message.content  # type: ignore[no-any-return]
    raise ValueError(client)


def _litellm_kwargs(provider: str, url: str) -> dict[str, Any]:
    spec = PROVIDERS[provider]
    kwargs: dict[str, Any] = {"model": spec["model"], "api_key": KEY,
                              "api_base": url + spec["base"],
                              "messages": [{"role": "user", "content": "Hi"}]}
    if provider == "anthropic":
        kwargs["max_tokens"] = 64000
    return kwargs


def stream_once(client: str, provider: str, url: str, c: Any) -> tuple[float, float, str]:
    """(total seconds, seconds to the first text delta, the text)."""
    spec = PROVIDERS[provider]
    parts: list[str] = []
    ttft = 0.0
    t0 = time.perf_counter()
    if client == "engine":
        with c.chat().user("Hi").stream() as stream:
            for event in stream:
                if event.is_content_delta:
                    if not parts:
                        ttft = time.perf_counter() - t0
                    parts.append(event.as_content_delta.text)
    elif client == "httpx":
        with c.stream("POST", url + spec["path"], content=body(provider, "stream"),
                      headers=spec["headers"]) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].lstrip()
                if data == "[DONE]":
                    break
                text = line_text(provider, json.loads(data))
                if text:
                    if not parts:
                        ttft = time.perf_counter() - t0
                    parts.append(text)
    elif client == "sdk" and provider == "openai":
        for chunk in c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                if not parts:
                    ttft = time.perf_counter() - t0
                parts.append(chunk.choices[0].delta.content)
    elif client == "sdk":
        with c.messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=64000,
                               messages=[{"role": "user",
                                          "content": [{"type": "text", "text": "Hi"}]}]) as s:
            for text in s.text_stream:
                if text:
                    if not parts:
                        ttft = time.perf_counter() - t0
                    parts.append(text)
    elif client == "litellm":
        for chunk in c.completion(stream=True, **_litellm_kwargs(provider, url)):
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                if not parts:
                    ttft = time.perf_counter() - t0
                parts.append(content)
    else:
        raise ValueError(client)
    return time.perf_counter() - t0, ttft, "".join(parts)


async def async_call(client: str, provider: str, url: str, c: Any) -> str:
    spec = PROVIDERS[provider]
    if client in ("engine", "engine-aiohttp"):
        return (await c.chat().user("Hi").execute()).content  # type: ignore[no-any-return]
    if client == "aiohttp":
        async with c.post(url + spec["path"], data=body(provider, "plain"),
                          headers=spec["headers"]) as r:
            r.raise_for_status()
            return plain_text(provider, json.loads(await r.read()))
    if client == "httpx":
        r = await c.post(url + spec["path"], content=body(provider, "plain"),
                         headers=spec["headers"])
        r.raise_for_status()
        return plain_text(provider, json.loads(r.content))
    if client == "sdk" and provider == "openai":
        resp = await c.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": "Hi"}])
        return resp.choices[0].message.content  # type: ignore[no-any-return]
    if client == "sdk":
        resp = await c.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=64000,
                                       timeout=600,
                                       messages=[{"role": "user", "content":
                                                  [{"type": "text", "text": "Hi"}]}])
        return "".join(b.text for b in resp.content if b.type == "text")
    if client == "litellm":
        resp = await c.acompletion(**_litellm_kwargs(provider, url))
        return resp.choices[0].message.content  # type: ignore[no-any-return]
    raise ValueError(client)


def _close(c: Any) -> None:
    close = getattr(c, "close", None)
    if callable(close):
        close()


async def _aclose(c: Any) -> None:
    for name in ("aclose", "close"):
        close = getattr(c, name, None)
        if callable(close):
            result = close()
            if asyncio.iscoroutine(result):
                await result
            return


def measure_create(client: str, provider: str, url: str) -> dict[str, Any]:
    """One client construction in this fresh process (imports done before the clock).

    ``import engine`` is lazy, so for the engine the client's modules are imported first
    too: the clock then covers finding, checking (or reading from the cache) and compiling
    the manifest, and building the client, as ``httpx.Client()`` covers building its own.
    """
    if client == "engine":
        from engine import SyncAiClient  # noqa: F401
    elif client == "httpx":
        import httpx  # noqa: F401
    elif client == "sdk":
        __import__(provider)
    elif client == "litellm":
        import litellm  # noqa: F401
    t0 = time.perf_counter()
    c = make_sync(client, provider, url)
    seconds = time.perf_counter() - t0
    _close(c)
    return {"seconds": seconds}


def measure_sequential(client: str, provider: str, url: str, n: int) -> dict[str, Any]:
    c = make_sync(client, provider, url)
    call = sync_call(client, provider, url, c)
    for _ in range(min(50, n)):  # warm: connection, caches
        assert call()
    times = []
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        t0 = clock()
        text = call()
        times.append(clock() - t0)
        assert text
    wall = clock() - start
    _close(c)
    times.sort()
    return {"median": statistics.median(times),
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
            "calls_per_s": n / wall}


def measure_stream(client: str, provider: str, url: str, chunks: int,
                   rounds: int = 3) -> dict[str, Any]:
    c = make_sync(client, provider, url)
    expected = "tok " * chunks
    stream_once(client, provider, url, c)  # warm
    totals, ttfts = [], []
    for _ in range(rounds):
        total, ttft, text = stream_once(client, provider, url, c)
        if text != expected:
            raise SystemExit(f"{client}/{provider}: stream text has {len(text)} characters, "
                             f"expected {len(expected)}")
        totals.append(total)
        ttfts.append(ttft)
    _close(c)
    total = statistics.median(totals)
    return {"total": total, "deltas_per_s": chunks / total, "ttft": statistics.median(ttfts)}


def measure_concurrent(client: str, provider: str, url: str, n: int,
                       rounds: int = 3) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        c = await make_async(client, provider, url)()
        call = async_call

        async def burst() -> float:
            t0 = time.perf_counter()
            texts = await asyncio.gather(*(call(client, provider, url, c) for _ in range(n)))
            seconds = time.perf_counter() - t0
            assert all(texts) and len(texts) == n
            return seconds

        await burst()  # warm: the pool's connections
        walls = [await burst() for _ in range(rounds)]
        await _aclose(c)
        return {"wall": statistics.median(walls)}
    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("create", "sequential", "stream", "concurrent"))
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("provider", choices=sorted(PROVIDERS))
    parser.add_argument("url")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.measure == "create":
        result = measure_create(args.client, args.provider, args.url)
    elif args.measure == "sequential":
        result = measure_sequential(args.client, args.provider, args.url, args.n)
    elif args.measure == "stream":
        result = measure_stream(args.client, args.provider, args.url, args.chunks)
    else:
        result = measure_concurrent(args.client, args.provider, args.url, args.n)
    result["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
