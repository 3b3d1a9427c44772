"""``python -m conformance``: replay every fixture against every manifest.

    python -m conformance                 run everything, print failures and the matrix
    python -m conformance -k anthropic    only cases whose id contains a -k text
    python -m conformance --list          list the case ids and exit

Exit status 1 when a case fails, a fixture is invalid, or a manifest lacks a
required scenario without declaring the capability it lacks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from .fixture import SCENARIOS
from .runner import Outcome, all_cases, coverage, run_cases

__all__ = ["main"]


def _matrix(table: dict[str, dict[str, str]]) -> list[str]:
    short = {"multi_turn": "multi", "stream_text": "s_text", "tool_result": "tool_res",
             "stream_tools": "s_tools", "error_auth": "e_auth", "error_rate_limit": "e_rate",
             "error_in_stream": "e_stream"}
    heads = [short.get(s, s) for s in SCENARIOS]
    width = max([8, *(len(p) for p in table)])
    lines = [" " * width + " " + " ".join(f"{h:>8}" for h in heads)]
    for provider in sorted(table):
        row = table[provider]
        lines.append(f"{provider:<{width}} " + " ".join(f"{row[s]:>8}" for s in SCENARIOS))
    return lines


def _report(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        mark = {"pass": "ok  ", "fail": "FAIL", "known": "known"}[outcome.status]
        print(f"{mark} {outcome.case.id}")
        if outcome.status != "pass":
            for problem in outcome.problems:
                print("       " + problem.replace("\n", "\n       "))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance",
                                     description="Replay recorded exchanges against manifests.")
    parser.add_argument("-k", action="append", default=[], metavar="TEXT",
                        help="run only cases whose id (provider/scenario) contains TEXT")
    parser.add_argument("--list", action="store_true", help="list case ids and exit")
    parser.add_argument("--fixtures", type=Path, default=None,
                        help="a fixtures directory (default: the built-in one)")
    args = parser.parse_args(argv)
    cases, problems, providers = all_cases(args.fixtures)
    if args.k:
        cases = [c for c in cases if any(k in c.id for k in args.k)]
    if args.list:
        for case in cases:
            print(case.id)
        return 0
    for problem in problems:
        print(f"FIXTURE {problem}")
    outcomes = asyncio.run(run_cases(cases))
    _report(outcomes)
    table = coverage(outcomes, providers if not args.k else
                     sorted({c.provider for c in cases}))
    print()
    print("\n".join(_matrix(table)))
    missing = [f"{p}/{s}" for p, row in table.items() for s, v in row.items() if v == "missing"]
    passed = sum(o.status == "pass" for o in outcomes)
    failed = sum(o.status == "fail" for o in outcomes)
    known = sum(o.status == "known" for o in outcomes)
    print()
    if missing and not args.k:
        print(f"missing required scenarios: {', '.join(missing)}")
    print(f"{passed} passed, {failed} failed" + (f", {known} known" if known else ""))
    bad = failed or problems or (missing and not args.k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
