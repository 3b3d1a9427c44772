"""Smoke test of the benchmark harness (``python -m benchmarks``) at its smallest settings.

Runs the whole command once in a subprocess (mock server, ceiling, every measure for
both manifests) and checks the JSON it writes: every measure present for the engine
and raw httpx, every figure a positive number. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASURES = ("cold", "rss", "create_first", "create_cached", "seq_median", "seq_p99",
            "seq_calls_per_s", "stream_total", "stream_deltas_per_s", "stream_ttft",
            "concurrent_wall")


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_benchmarks_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--calls", "20",
         "--chunks", "50", "--concurrency", "5", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90)  # about 20 s when idle
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| measure |" in done.stdout
    assert (tmp_path / "results.md").read_text().startswith("Machine: ")
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["python"]
    assert result["command"].startswith("python -m benchmarks")
    assert all(positive(v) for v in result["server_ceiling"].values())
    assert set(result["results"]) == {"openai", "anthropic"}
    for provider, rows in result["results"].items():
        for measure in MEASURES:
            cell = rows[measure]
            for client in ("engine", "httpx"):
                assert positive(cell[client]["median"]), (provider, measure, client)
            assert positive(cell["ratio"]["engine"]["median"]), (provider, measure)
    for name in ("httpx", "engine", "engine AiClient"):
        assert positive(result["imports"][name]["time"]["median"]), name
        assert positive(result["imports"][name]["rss"]["median"]), name
    assert any("byte-identical" in note for note in result["notes"]), result["notes"]
