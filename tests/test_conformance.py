"""The conformance suite under pytest: the same cases as ``python -m conformance``,
with readable ids (``provider/fixture``), driven by the same runner."""

from __future__ import annotations

import asyncio

import pytest

from engine.conformance.fixture import SCENARIOS
from engine.conformance.runner import all_cases, coverage, known_failures, run_case
from engine.conformance.server import ReplayServer

CASES, PROBLEMS, PROVIDERS = all_cases()
KNOWN = known_failures()


@pytest.fixture(scope="module")
def server():
    with ReplayServer() as running:
        yield running


def test_fixtures_are_valid():
    assert PROBLEMS == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, server):
    outcome = asyncio.run(run_case(case, server, KNOWN))
    assert outcome.status in ("pass", "known"), "\n".join(outcome.problems)


def test_every_manifest_covers_every_required_scenario(server):
    outcomes = [asyncio.run(run_case(c, server, KNOWN)) for c in CASES if c.kind == "refusal"]
    table = coverage(outcomes, PROVIDERS)
    covered = {(c.provider, c.scenario) for c in CASES}
    missing = [f"{p}/{s}" for p in PROVIDERS for s in SCENARIOS
               if (p, s) not in covered and table[p][s] == "missing"]
    assert missing == []
