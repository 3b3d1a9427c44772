"""The one benchmark command: the engine against raw httpx, same exchange, same run.

    .venv/bin/python -m benchmarks [--quick] [--repeats N] [--sdks]      (or: make bench)

(from the repository's root; ``.venv/bin/python benchmarks/run.py`` works from anywhere).

Starts the mock provider (:mod:`benchmarks.server`) on 127.0.0.1 in its own
process, measures its ceiling with a raw-socket client (:mod:`benchmarks.ceiling`)
and prints it, then, ``--repeats`` times, runs every measure in fresh processes
for the engine and for raw httpx doing the same exchange (:mod:`benchmarks.workloads`),
the two back to back, their order alternating from one repeat to the next:

* cold process: ``python -c`` importing, creating a client, making one call and
  parsing it, timed from outside (wall, interpreter start included), with its peak RSS;
* ``import engine`` / ``from engine import AiClient`` against ``import httpx``;
* ``create``: the first (an empty ``ENGINE_CACHE_DIR``: the manifest is checked in full)
  and cached (a second process, the cache warm) against ``httpx.Client()``;
* sequential calls on one sync client: median and p99 per call, calls/s;
* one stream of ``--chunks`` text deltas: total, deltas/s, time to the first text;
* ``--concurrency`` calls at once on one async client, each with its defaults
  (httpx ``AsyncClient()``: 100 connections, 20 kept alive; the engine: 100 and 100).

Each figure is the median over the repeats; the ratio is the median of the
per-repeat ratios engine / httpx (so a drift of the machine's speed between
repeats cancels). Writes a Markdown table to stdout and ``results.md``, and
everything, with the machine, to ``results.json`` (in ``--out``, default
``benchmarks/``). ``--sdks`` adds the ``openai`` and ``anthropic`` SDKs and
LiteLLM when importable by ``--sdk-python`` (default: this interpreter); they
are never installed by this project or run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: .venv/bin/python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import ceiling
from benchmarks.workloads import IMPORTS, PROVIDERS, cold_code, import_code

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_ORDER = ("openai", "anthropic")

# metric key -> (label, unit, scale from seconds/KiB to the unit, higher is better)
METRICS: dict[str, tuple[str, str, float, bool]] = {
    "cold": ("cold process: import + create + first call", "ms", 1e3, False),
    "rss": ("peak RSS after one call", "MiB", 1 / 1024, False),
    "create_first": ("create, first (empty manifest cache)", "ms", 1e3, False),
    "create_cached": ("create, cached (warm cache, new process)", "ms", 1e3, False),
    "seq_median": ("sequential call, median", "µs", 1e6, False),
    "seq_p99": ("sequential call, p99", "µs", 1e6, False),
    "seq_calls_per_s": ("sequential calls", "calls/s", 1.0, True),
    "stream_total": ("stream of N deltas, total", "ms", 1e3, False),
    "stream_deltas_per_s": ("stream rate", "deltas/s", 1.0, True),
    "stream_ttft": ("stream, time to first content", "ms", 1e3, False),
    "concurrent_wall": ("C concurrent async calls, wall", "ms", 1e3, False),
}
IMPORT_METRICS = {"time": ("import time", "ms", 1e3), "rss": ("peak RSS after import", "MiB",
                                                              1 / 1024)}
BASE = "httpx"


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="engine-bench-"))
        self.warm_cache = self.tmp / "warm-cache"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env["ENGINE_CACHE_DIR"] = str(self.warm_cache)
        self.env.pop("OPENAI_BASE_URL", None)
        self.env.pop("ANTHROPIC_BASE_URL", None)
        self.server: subprocess.Popen[str] | None = None
        self.url = ""

    # -- processes ------------------------------------------------------------------------

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--chunks", str(self.args.chunks)],
            cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the mock server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop_server(self) -> None:
        if self.server is not None:
            assert self.server.stdin is not None
            self.server.stdin.close()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None

    def python(self, client: str) -> str:
        if client in ("sdk", "litellm") and self.args.sdk_python:
            return str(self.args.sdk_python)
        return sys.executable

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
        """Run one fresh process; (its stdout, its wall seconds seen from here)."""
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env or self.env, capture_output=True,
                              text=True, timeout=600)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"benchmark process failed ({done.returncode}): {argv[:6]}\n"
                             f"{done.stderr.strip()[-2000:]}")
        return done.stdout, wall

    def workload(self, measure: str, client: str, provider: str,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
        n = self.args.concurrency if measure == "concurrent" else self.args.calls
        out, _ = self.run([self.python(client), "-m", "benchmarks.workloads", measure, client,
                           provider, self.url, "--n", str(n), "--chunks", str(self.args.chunks)],
                          env)
        return dict(json.loads(out.strip().splitlines()[-1]))

    # -- one repeat ------------------------------------------------------------------------

    def repeat_provider(self, provider: str, clients: list[str]) -> dict[str, dict[str, float]]:
        """Every per-provider metric for every client, once."""
        got: dict[str, dict[str, float]] = {c: {} for c in clients}
        for client in clients:
            out, wall = self.run([self.python(client), "-c",
                                  cold_code(client, provider, self.url)])
            got[client]["cold"] = wall
            got[client]["rss"] = float(out.split()[-1])
        for client in clients:
            cache = self.tmp / f"cache-{provider}-{client}-{time.monotonic_ns()}"
            env = dict(self.env, ENGINE_CACHE_DIR=str(cache))
            got[client]["create_first"] = self.workload("create", client, provider,
                                                        env)["seconds"]
            got[client]["create_cached"] = self.workload("create", client, provider,
                                                         env)["seconds"]
            shutil.rmtree(cache, ignore_errors=True)
        for client in clients:
            seq = self.workload("sequential", client, provider)
            got[client].update(seq_median=seq["median"], seq_p99=seq["p99"],
                               seq_calls_per_s=seq["calls_per_s"])
        for client in clients:
            st = self.workload("stream", client, provider)
            got[client].update(stream_total=st["total"], stream_deltas_per_s=st["deltas_per_s"],
                               stream_ttft=st["ttft"])
        for client in clients:
            got[client]["concurrent_wall"] = self.workload("concurrent", client,
                                                           provider)["wall"]
        return got

    def repeat_aiohttp(self, provider: str) -> dict[str, float]:
        """The concurrent measure over aiohttp: the engine's transport, and raw aiohttp."""
        return {client: self.workload("concurrent", client, provider)["wall"]
                for client in ("engine-aiohttp", "aiohttp")}

    def repeat_imports(self, statements: list[str]) -> dict[str, dict[str, float]]:
        got = {}
        for name in statements:
            out, _ = self.run([self.python("sdk" if name in ("openai", "anthropic", "litellm")
                                           else "engine"), "-c", import_code(IMPORTS[name])])
            seconds, rss = out.split()[-2:]
            got[name] = {"time": float(seconds), "rss": float(rss)}
        return got

    def seen_bodies(self) -> dict[str, list[str]]:
        with urllib.request.urlopen(f"{self.url}/_bodies", timeout=10) as resp:
            return dict(json.loads(resp.read()))


def available_sdks(python: str) -> tuple[list[str], list[str]]:
    """(clients to add, printed notes) for --sdks."""
    clients, notes = [], []
    found = {}
    for module in ("openai", "anthropic", "litellm"):
        probe = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            found[module] = probe.stdout.strip()
        else:
            notes.append(f"--sdks: `{module}` is not importable by {python}; skipped")
    if "openai" in found and "anthropic" in found:
        clients.append("sdk")
    elif "openai" in found or "anthropic" in found:
        notes.append("--sdks: the official SDK rows need both `openai` and `anthropic`; skipped")
    if "litellm" in found:
        clients.append("litellm")
    return clients, notes + [f"--sdks: {m} {v}" for m, v in found.items()]


def median_rows(repeats: list[dict[str, dict[str, float]]], clients: list[str],
                metrics: list[str]) -> dict[str, Any]:
    """{metric: {client: {median, values}, ratio: {client: {median, values}}}}."""
    out: dict[str, Any] = {}
    for metric in metrics:
        row: dict[str, Any] = {}
        for client in clients:
            values = [r[client][metric] for r in repeats]
            row[client] = {"median": statistics.median(values), "values": values}
        ratios: dict[str, Any] = {}
        for client in clients:
            if client == BASE:
                continue
            values = [r[client][metric] / r[BASE][metric] for r in repeats if r[BASE][metric]]
            ratios[client] = {"median": statistics.median(values) if values else None,
                              "values": values}
        row["ratio"] = ratios
        out[metric] = row
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import httpx

    import engine
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(), "engine": getattr(engine, "__version__", "?"),
            "httpx": httpx.__version__}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_cell(ratio: dict[str, Any]) -> str:
    """The median ratio, and the range of the per-repeat ratios when there are several."""
    values = ratio["values"]
    text = fmt(ratio["median"], "x")
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    return text


def label(metric: str, settings: dict[str, Any]) -> str:
    text, unit, _, higher = METRICS[metric]
    text = text.replace("N deltas", f"{settings['chunks']:,} deltas").replace(
        "C concurrent", f"{settings['concurrency']} concurrent")
    return f"{text} ({unit}{', higher is better' if higher else ''})"


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}, "
             f"{m['platform']}; engine {m['engine']}, httpx {m['httpx']}.",
             f"Command: `{result['command']}`; medians of {settings['repeats']} repeats, "
             f"each measure in fresh processes; ratio = median of the per-repeat ratios "
             f"engine / httpx (their range in brackets).", ""]
    ceil = result["server_ceiling"]
    lines += [f"Mock server ceiling (raw-socket client): {ceil['calls_per_s']:,.0f} sequential "
              f"calls/s, {ceil['deltas_per_s']:,.0f} stream deltas/s, "
              f"{settings['concurrency']} concurrent calls in "
              f"{ceil['concurrent_wall'] * 1e3:.1f} ms.", ""]
    head = "| measure |"
    rule = "| --- |"
    for provider in result["providers"]:
        head += f" {provider}: engine | raw httpx | ratio |"
        rule += " ---: | ---: | ---: |"
    lines += [head, rule]
    for metric in METRICS:
        scale = METRICS[metric][2]
        row = f"| {label(metric, settings)} |"
        for provider in result["providers"]:
            cell = result["results"][provider][metric]
            row += (f" {fmt(cell['engine']['median'] * scale)} |"
                    f" {fmt(cell[BASE]['median'] * scale)} |"
                    f" {ratio_cell(cell['ratio']['engine'])} |")
        lines.append(row)
    lines += ["", "| import | time (ms) | peak RSS (MiB) | time / `import httpx` |",
              "| --- | ---: | ---: | ---: |"]
    imports = result["imports"]
    for name, cell in imports.items():
        ratio = cell["time"]["ratio"]
        lines.append(f"| `{IMPORTS[name]}` | {fmt(cell['time']['median'] * 1e3)} | "
                     f"{fmt(cell['rss']['median'] / 1024)} | "
                     f"{ratio_cell(ratio) if ratio else '1.00x'} |")
    if result.get("aiohttp"):
        lines += ["", f"| {settings['concurrency']} concurrent async calls, wall (ms) | "
                  f"engine over aiohttp | raw aiohttp | ratio | raw httpx (same run) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for provider, cell in result["aiohttp"].items():
            lines.append(f"| {provider} | {fmt(cell['engine-aiohttp']['median'] * 1e3)} | "
                         f"{fmt(cell['aiohttp']['median'] * 1e3)} | "
                         f"{ratio_cell(cell['ratio'])} | {fmt(cell['httpx']['median'] * 1e3)} |")
    others = [c for c in result["clients"] if c not in ("engine", BASE)]
    if others:
        lines += ["", "| measure | provider | client | value | raw httpx | ratio |",
                  "| --- | --- | --- | ---: | ---: | ---: |"]
        for provider in result["providers"]:
            for client in others:
                name = provider if client == "sdk" else client
                for metric in METRICS:
                    scale = METRICS[metric][2]
                    cell = result["results"][provider][metric]
                    lines.append(f"| {label(metric, settings)} | {provider} | {name} | "
                                 f"{fmt(cell[client]['median'] * scale)} | "
                                 f"{fmt(cell[BASE]['median'] * scale)} | "
                                 f"{ratio_cell(cell['ratio'][client])} |")
    if result["notes"]:
        lines += [""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def _has_aiohttp() -> bool:
    return subprocess.run([sys.executable, "-c", "import aiohttp"],
                          capture_output=True).returncode == 0


def _aio_cells(runs: list[dict[str, float]],
               same: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Medians of the aiohttp rows, the engine's ratio to raw aiohttp, and raw httpx's
    concurrent wall of the same repeats (for scale)."""
    engine = [r["engine-aiohttp"] for r in runs]
    raw = [r["aiohttp"] for r in runs]
    ratios = [e / a for e, a in zip(engine, raw, strict=True) if a]
    httpx_walls = [r[BASE]["concurrent_wall"] for r in same]
    return {"engine-aiohttp": {"median": statistics.median(engine), "values": engine},
            "aiohttp": {"median": statistics.median(raw), "values": raw},
            "ratio": {"median": statistics.median(ratios), "values": ratios},
            "httpx": {"median": statistics.median(httpx_walls), "values": httpx_walls}}


def check_bodies(seen: dict[str, list[str]], providers: list[str]) -> list[str]:
    """Problems, if the engine and raw httpx did not send the same bodies."""
    problems = []
    for provider in providers:
        path = PROVIDERS[provider]["path"]
        for kind in ("plain", "stream"):
            ours = seen.get(f"{path} {kind} engine", [])
            raw = seen.get(f"{path} {kind} python-httpx", [])
            if len(ours) != 1 or ours != raw:
                problems.append(f"{provider} {kind}: engine sent {ours}, raw httpx sent {raw}")
    return problems


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 3 repeats, 300 sequential calls (unless given)")
    parser.add_argument("--repeats", type=int, help="fresh-process repeats (default 5)")
    parser.add_argument("--calls", type=int, help="sequential calls per process (default 1000)")
    parser.add_argument("--chunks", type=int, default=5000, help="deltas in the stream")
    parser.add_argument("--concurrency", type=int, default=200, help="concurrent calls")
    parser.add_argument("--providers", default=",".join(PROVIDER_ORDER),
                        help="comma-separated: openai,anthropic")
    parser.add_argument("--sdks", action="store_true",
                        help="also the openai/anthropic SDKs and LiteLLM, when importable")
    parser.add_argument("--sdk-python", help="the interpreter that has the SDKs installed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks",
                        help="where results.md and results.json go")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.calls is None:
        args.calls = 300 if args.quick else 1000
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    for provider in args.providers:
        if provider not in PROVIDERS:
            parser.error(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
    if min(args.repeats, args.calls, args.chunks, args.concurrency) < 1:
        parser.error("--repeats, --calls, --chunks and --concurrency must be at least 1")
    return args


def _compile_bytecode() -> str:
    """Compile the engine's modules as installing its wheel does (pip writes the .pyc
    files), so the fresh processes do not pay for compiling sources that httpx, installed
    from a wheel, never pays for (an editable checkout run with PYTHONDONTWRITEBYTECODE
    would recompile every module in every process)."""
    import compileall

    ok = compileall.compile_dir(str(ROOT / "engine"), quiet=1)
    return ("the engine's bytecode was compiled first, as a wheel install does"
            if ok else "compiling the engine's bytecode failed: its imports include compiling")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m benchmarks" + "".join(f" {a}" for a in (argv if argv is not None
                                                                  else sys.argv[1:]))
    clients = ["engine", BASE]
    notes: list[str] = []
    imports = ["httpx", "engine", "engine AiClient"]
    if args.sdks:
        extra, sdk_notes = available_sdks(args.sdk_python or sys.executable)
        clients += extra
        notes += sdk_notes
        for note in sdk_notes:
            print(note, file=sys.stderr)
        imports += [m for m in ("openai", "anthropic") if "sdk" in extra]
        imports += ["litellm"] if "litellm" in extra else []
    notes.append(_compile_bytecode())
    harness = Harness(args)
    harness.start_server()
    try:
        print(f"mock server on {harness.url}; measuring its ceiling...", file=sys.stderr)
        server_ceiling = ceiling.measure(harness.port, args.chunks, args.concurrency)
        print(f"mock server ceiling (raw-socket client): {server_ceiling['calls_per_s']:,.0f} "
              f"calls/s, {server_ceiling['deltas_per_s']:,.0f} deltas/s, "
              f"{args.concurrency} concurrent in {server_ceiling['concurrent_wall'] * 1e3:.1f} ms",
              file=sys.stderr)
        # Warm the shared manifest cache the cold-process and call measures use.
        harness.run([sys.executable, "-c", "from engine import SyncAiClient\n" + "".join(
            f"SyncAiClient.create({PROVIDERS[p]['model']!r}, api_key='k')\n"
            for p in args.providers)])
        per_provider: dict[str, list[dict[str, dict[str, float]]]] = {
            p: [] for p in args.providers}
        import_runs: list[dict[str, dict[str, float]]] = []
        aio = _has_aiohttp()
        aio_runs: dict[str, list[dict[str, float]]] = {p: [] for p in args.providers}
        if not aio:
            notes.append("aiohttp is not installed: the aiohttp transport rows are left out "
                         "(pip install 'engine[aiohttp]')")
        for index in range(args.repeats):
            order = clients if index % 2 == 0 else clients[::-1]
            t0 = time.perf_counter()
            import_runs.append(harness.repeat_imports(imports if index % 2 == 0
                                                      else imports[::-1]))
            for provider in args.providers:
                per_provider[provider].append(harness.repeat_provider(provider, order))
                if aio:
                    aio_runs[provider].append(harness.repeat_aiohttp(provider))
            print(f"repeat {index + 1}/{args.repeats} done in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
        problems = check_bodies(harness.seen_bodies(), args.providers)
    finally:
        harness.stop_server()
        shutil.rmtree(harness.tmp, ignore_errors=True)
    if problems:
        notes += [f"request bodies differ: {p}" for p in problems]
    else:
        notes.append("the engine and raw httpx sent byte-identical request bodies "
                     "(checked by the server)")
    peak = max(statistics.median(r["engine"]["seq_calls_per_s"] for r in runs)
               for runs in per_provider.values())
    notes.append(f"the server's sequential ceiling is {server_ceiling['calls_per_s'] / peak:.1f}x "
                 f"the engine's best sequential rate")
    result: dict[str, Any] = {
        "command": command,
        "machine": machine(),
        "settings": {"repeats": args.repeats, "calls": args.calls, "chunks": args.chunks,
                     "concurrency": args.concurrency},
        "server_ceiling": server_ceiling,
        "providers": args.providers,
        "clients": clients,
        "results": {p: median_rows(runs, clients, list(METRICS))
                    for p, runs in per_provider.items()},
        "imports": {},
        "aiohttp": {p: _aio_cells(runs, per_provider[p]) for p, runs in aio_runs.items()
                    if runs},
        "notes": notes,
        "units": {"seconds": [k for k in METRICS if k not in ("rss", "seq_calls_per_s",
                                                              "stream_deltas_per_s")],
                  "KiB": ["rss"], "per_second": ["seq_calls_per_s", "stream_deltas_per_s"]},
    }
    for name in imports:
        cell: dict[str, Any] = {}
        for metric in IMPORT_METRICS:
            values = [r[name][metric] for r in import_runs]
            ratios = [r[name][metric] / r[BASE][metric] for r in import_runs] \
                if name != BASE else []
            cell[metric] = {"median": statistics.median(values), "values": values,
                            "ratio": {"median": statistics.median(ratios),
                                      "values": ratios} if ratios else None}
        result["imports"][name] = cell
    table = markdown(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
