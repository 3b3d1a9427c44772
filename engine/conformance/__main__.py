"""``python -m engine.conformance``: replay every fixture against every manifest.

    python -m engine.conformance               run everything, print failures and the matrix
    python -m engine.conformance -k stream     only cases whose id contains a -k text
    python -m engine.conformance --list        list the case ids and exit

Exit status 1 when a case fails, a fixture is invalid, or a manifest lacks a
required scenario without declaring the capability it lacks; 2 when there is
nothing to run (a ``-k`` that selects no case, a ``--fixtures`` directory that
does not exist), with the reason on stderr. (``python -m conformance`` from the
repository root is the same command.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from .fixture import FIXTURES
from .matrix import SHORT
from .runner import ALL_SCENARIOS, Outcome, all_cases, coverage, run_cases

__all__ = ["main"]

PROG = "python -m engine.conformance"


def _matrix(table: dict[str, dict[str, str]]) -> list[str]:
    heads = [SHORT.get(s, s) for s in ALL_SCENARIOS]
    width = max([8, *(len(p) for p in table)])
    lines = [" " * width + " " + " ".join(f"{h:>8}" for h in heads)]
    for provider in sorted(table):
        row = table[provider]
        lines.append(f"{provider:<{width}} " + " ".join(f"{row[s]:>8}"
                                                         for s in ALL_SCENARIOS))
    return lines


def _report(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        mark = {"pass": "ok  ", "fail": "FAIL", "known": "known"}[outcome.status]
        print(f"{mark} {outcome.case.id}")
        if outcome.status != "pass":
            for problem in outcome.problems:
                print("       " + problem.replace("\n", "\n       "))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="Replay recorded exchanges against manifests.")
    parser.add_argument("-k", action="append", default=[], metavar="TEXT",
                        help="run only cases whose id (provider/scenario) contains TEXT")
    parser.add_argument("--list", action="store_true", help="list case ids and exit")
    parser.add_argument("--fixtures", type=Path, default=None,
                        help="a fixtures directory (default: the built-in one)")
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _summary(outcomes: list[Outcome], missing: list[str]) -> str:
    passed = sum(o.status == "pass" for o in outcomes)
    failed = sum(o.status == "fail" for o in outcomes)
    known = sum(o.status == "known" for o in outcomes)
    lines = [f"missing required scenarios: {', '.join(missing)}"] if missing else []
    lines.append(f"{passed} passed, {failed} failed" + (f", {known} known" if known else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases; 0 all pass, 1 something failed, 2 nothing to run."""
    args = _parser().parse_args(argv)
    if args.fixtures is not None and not args.fixtures.is_dir():
        return _fail(f"--fixtures: {args.fixtures} is not a directory")
    cases, problems, providers = all_cases(args.fixtures)
    if args.k:
        cases = [c for c in cases if any(k in c.id for k in args.k)]
    if not cases:
        wanted = " or ".join(repr(k) for k in args.k)
        return _fail(f"no case id contains {wanted} (--list shows them)" if args.k
                     else f"nothing to run: no fixture in {args.fixtures or FIXTURES}")
    if args.list:
        print("\n".join(case.id for case in cases))
        return 0
    for problem in problems:
        print(f"FIXTURE {problem}")
    outcomes = asyncio.run(run_cases(cases))
    _report(outcomes)
    table = coverage(outcomes, sorted({c.provider for c in cases}) if args.k else providers)
    print("\n" + "\n".join(_matrix(table)) + "\n")
    missing = [] if args.k else [f"{p}/{s}" for p, row in table.items()
                                 for s, v in row.items() if v == "missing"]
    print(_summary(outcomes, missing))
    failed = any(o.status == "fail" for o in outcomes)
    return 1 if failed or problems or missing else 0


if __name__ == "__main__":
    sys.exit(main())
