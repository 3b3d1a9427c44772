"""engine.validate on floods of problems: linear time, at most LIMIT lines, then one line.

Cerberus sorts its whole error list on every error it adds, so a manifest with
thousands of problems used to take quadratic time (19 s at 4,000 unknown keys).
The timing bounds below are generous complexity guards (the checks take well
under a second here), not benchmarks.
"""

from __future__ import annotations

import math
import random
import re
import time
from pathlib import Path

import pytest

from engine.errors import ManifestError
from engine.manifest import clear_cache, load_manifest
from engine.manifest.compile import LIMIT
from engine.manifest.schema import CHUNK
from engine.validate import main, run

HEAD = """\
manifest: 1
id: big
base_url: https://example.test/v1
auth: {scheme: bearer, env: [BIG_KEY]}
chat:
  path: /chat
  body: {model: "{{ model }}"}
  response: {content: answer}
"""
HEAD_LINES = HEAD.count("\n")
GUARD_S = 5.0
N = 8000


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text(text)
    return path


def timed(path: Path) -> tuple[float, list[str], int, bool]:
    started = time.perf_counter()
    report = run([str(path)])
    return time.perf_counter() - started, report.problems, report.total, report.stopped


def test_thousands_of_unknown_keys_are_reported_up_to_the_limit_quickly(tmp_path, capsys):
    path = write(tmp_path, HEAD + "".join(f"k{i}: 1\n" for i in range(N)))
    elapsed, problems, total, stopped = timed(path)
    assert elapsed < GUARD_S, f"{N} unknown keys took {elapsed:.2f}s"
    assert len(problems) == LIMIT + 1 and (total, stopped) == (N, False)
    assert problems[0] == f"{path}:{HEAD_LINES + 1}: k0: unknown field"
    assert problems[LIMIT - 1] == f"{path}:{HEAD_LINES + LIMIT}: k{LIMIT - 1}: unknown field"
    assert problems[LIMIT] == (f"{path}:1: (top): ... and {N - LIMIT} more problem(s) not "
                               f"reported (the first {LIMIT} are)")
    assert main([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == problems
    assert captured.out == f"{N} problem(s) in 1 manifest(s)\n"


def test_nested_unknown_keys_near_valid_ones_get_suggestions_only_where_shown(tmp_path):
    keys = "".join(f"  respons{i}: 1\n" for i in range(N))
    path = write(tmp_path, HEAD + keys)
    elapsed, problems, total, _ = timed(path)
    assert elapsed < GUARD_S, f"{N} unknown keys took {elapsed:.2f}s"
    assert total == N
    assert problems[0] == (f"{path}:{HEAD_LINES + 1}: chat.respons0: unknown field; "
                           "did you mean 'response'?")
    assert problems[LIMIT] == (f"{path}:1: (top): ... and {N - LIMIT} more problem(s) not "
                               f"reported (the first {LIMIT} are)")


def test_thousands_of_bad_values_stop_once_the_report_is_full(tmp_path, capsys):
    models = "".join(f"  m{i}: {{context_window: x}}\n" for i in range(N))
    path = write(tmp_path, HEAD + "models:\n" + models)
    elapsed, problems, total, stopped = timed(path)
    assert elapsed < GUARD_S, f"{N} bad models took {elapsed:.2f}s"
    checked = math.ceil(LIMIT / CHUNK) * CHUNK  # whole pieces of CHUNK entries
    assert (total, stopped) == (checked, True)
    first = HEAD_LINES + 2
    assert problems[:2] == [f"{path}:{first}: models.m0.context_window: must be of integer type",
                            f"{path}:{first + 1}: models.m1.context_window: must be of integer "
                            "type"]
    assert problems[LIMIT - 1] == (f"{path}:{first + LIMIT - 1}: models.m{LIMIT - 1}."
                                   "context_window: must be of integer type")
    assert problems[LIMIT:] == [f"{path}:1: (top): ... and more problems not reported: checking "
                                f"stopped after {checked} (the first {LIMIT} are reported)"]
    assert main([str(path)]) == 1
    assert capsys.readouterr().out == f"at least {checked} problem(s) in 1 manifest(s)\n"


def test_floods_in_nested_lists_are_linear_too(tmp_path):
    rules = "".join(f"    - {{status: 400, kind: wrong{i}}}\n" for i in range(N))
    events = "".join("      - {when: 1, content: x, tool_call: {complete: true, name: n, "
                     "extra: {a: 1, b: 2}}}\n" for _ in range(N // 4))
    path = write(tmp_path, HEAD + "  stream:\n    framing: sse\n    eof_ok: true\n"
                 "    events:\n" + events + "errors:\n  rules:\n" + rules)
    elapsed, problems, _, stopped = timed(path)
    assert elapsed < GUARD_S, f"nested floods took {elapsed:.2f}s"
    assert stopped and len(problems) == LIMIT + 1
    at = f"{path}:{HEAD_LINES + 5}: chat.stream.events[0]"
    assert problems[:3] == [f"{at}.tool_call.extra.a: must be of string type",
                            f"{at}.tool_call.extra.b: must be of string type",
                            f"{at}.when: must be of string type"]


@pytest.mark.parametrize("count, last", [
    (LIMIT, None),
    (LIMIT + 1, "... and 1 more problem(s) not reported (the first 200 are)"),
])
def test_the_count_line_appears_only_beyond_the_limit(tmp_path, count, last):
    path = write(tmp_path, HEAD + "".join(f"k{i}: 1\n" for i in range(count)))
    _, problems, total, _ = timed(path)
    assert total == count
    assert problems[LIMIT - 1] == f"{path}:{HEAD_LINES + LIMIT}: k{LIMIT - 1}: unknown field"
    assert problems[LIMIT:] == ([] if last is None else [f"{path}:1: (top): {last}"])


def test_loading_such_a_manifest_fails_quickly_with_the_capped_report(tmp_path, monkeypatch):
    write(tmp_path, HEAD + "".join(f"k{i}: 1\n" for i in range(N)))
    monkeypatch.setenv("AI_PROTOCOL_PATH", str(tmp_path))
    clear_cache()
    started = time.perf_counter()
    try:
        with pytest.raises(ManifestError) as info:
            load_manifest("big")
    finally:
        clear_cache()
    assert time.perf_counter() - started < GUARD_S
    assert len(info.value.problems) == LIMIT + 1
    assert info.value.problems[-1].endswith(f"... and {N - LIMIT} more problem(s) not reported "
                                            f"(the first {LIMIT} are)")


def _random_manifest(rng: random.Random) -> dict[str, object]:
    """A document with containers longer than CHUNK, mixing valid and invalid entries."""
    def some(*choices: object) -> object:
        return rng.choice(choices)

    size = CHUNK * 2 + rng.randrange(CHUNK)
    return {
        "manifest": some(1, 2),
        "id": some("big", "Big"),
        **({"colour": 1} if rng.random() < 0.5 else {}),
        "models": {f"m{i}": some({"context_window": 5}, {"context_window": "x"}, None,
                                 {"bogus": 1}, 7, {"max_output": 0})
                   for i in range(size)},
        "finish_reasons": {f"r{i}": some("stop", "stp", 3) for i in range(size)},
        "auth": {"scheme": some("bearer", "beare"), "env": [some("K", "1x") for _ in range(size)]},
        "chat": {
            "path": "/c", "body": {}, "response": {"content": some("a", 3)},
            "message": {some("user", "usr"): {}, "default": {}},
            "stream": {"framing": some("sse", "bad"), "events": [
                {"when": some("x", 1), "content": "a", some("end", "ned"): True,
                 "tool_call": {"extra": {f"k{j}": some("p", 2) for j in range(size)}}}
                for _ in range(size)]},
        },
        "errors": {"rules": [{"status": some(400, "x", [400, "y"]), "kind": some("timeout", "no"),
                              **({"knd": 1} if rng.random() < 0.2 else {})}
                             for _ in range(size)],
                   "retry_after": [some({"header": "h"}, {"header": "h", "path": "p"}, {})
                                   for _ in range(size)]},
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("update", [True, False])
def test_checking_in_pieces_finds_what_cerberus_finds_on_the_whole(seed, update):
    import cerberus

    from engine.manifest.check import _schema_check
    from engine.manifest.compile import Problems
    from engine.manifest.locate import RawDoc, format_path
    from engine.manifest.schema import SCHEMA

    doc = _random_manifest(random.Random(seed))
    whole = cerberus.Validator(SCHEMA, allow_unknown=False)
    whole.validate(doc, update=update)
    expected = set()
    for key, message in _flatten(whole.errors, ()):
        if key[:2] == ("chat", "message"):  # a role outside the table is an unknown key
            message = "unknown field"
        if message == "unknown field" and not update:
            continue  # the merged manifest's unknown keys are each file's, reported there
        expected.add(f"m.yaml:1: {format_path(key)}: {message}")
    report = Problems([RawDoc(Path("m.yaml"), doc, {})], limit=10**6)
    _schema_check(doc, report, index=0 if update else None)
    found = {re.sub(r"; did you mean '[^']*'\?$", "", line) for line in report.problems}
    assert found == expected
    assert len(found) > 3 * CHUNK  # the pieces were exercised


def _flatten(errors: object, prefix: tuple[object, ...]) -> list[tuple[tuple[object, ...], str]]:
    out: list[tuple[tuple[object, ...], str]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            out.extend(_flatten(value, (*prefix, key)))
    elif isinstance(errors, list):
        for item in errors:
            out.extend([(prefix, item)] if isinstance(item, str) else _flatten(item, prefix))
    return out


def test_unknown_keys_across_an_extends_chain_are_counted_once(tmp_path):
    half = LIMIT * 3 // 4
    parent = tmp_path / "base.yaml"
    parent.write_text(HEAD.replace("id: big", "id: base")
                      + "".join(f"  respons{i}: 1\n" for i in range(half)))
    child = tmp_path / "big.yaml"
    child.write_text("manifest: 1\nid: big\nextends: base\nchat:\n"
                     + "".join(f"  respons{i + half}: 1\n" for i in range(half)))
    _, problems, total, stopped = timed(child)
    assert (total, stopped) == (2 * half, False)
    assert len(problems) == LIMIT + 1 and len(set(problems)) == LIMIT + 1
    assert problems[0] == f"{child}:5: chat.respons{half}: unknown field; did you mean 'response'?"
    assert problems[half] == (f"{parent}:{HEAD_LINES + 1}: chat.respons0: unknown field; "
                              "did you mean 'response'?")
    assert problems[LIMIT] == (f"{child}:1: (top): ... and {2 * half - LIMIT} more problem(s) "
                               f"not reported (the first {LIMIT} are)")
