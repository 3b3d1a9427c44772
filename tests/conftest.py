"""Shared test configuration: bounded, deterministic hypothesis profiles; a private cache."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# Checked manifests are cached on disk (engine.manifest.load); tests, and the
# subprocesses they start, use a cache of their own, never the user's.
os.environ.setdefault("ENGINE_CACHE_DIR", tempfile.mkdtemp(prefix="engine-test-cache-"))

settings.register_profile("dev", deadline=None)
# CI: same bounds, derandomized so a run is reproducible on a fresh machine.
settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The edit-loop tier (`make fast`, `pytest -m fast`): whole modules that need no
# loopback server or subprocess fleet, plus tests marked `fast` one by one.
# `make test` still runs everything.
FAST_MODULES = frozenset({
    "test_client", "test_conformance", "test_e2e_chat", "test_errors_retry", "test_framing",
    "test_framing_bare", "test_paths", "test_purity", "test_stream_rules", "test_templates",
    "test_validate",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in FAST_MODULES:
            item.add_marker(pytest.mark.fast)
