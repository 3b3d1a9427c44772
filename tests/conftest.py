"""Shared test configuration: bounded, deterministic hypothesis profiles; a private cache."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings

# Checked manifests are cached on disk (engine.manifest.load); tests, and the
# subprocesses they start, use a cache of their own, never the user's.
os.environ.setdefault("ENGINE_CACHE_DIR", tempfile.mkdtemp(prefix="engine-test-cache-"))

settings.register_profile("dev", deadline=None)
# CI: same bounds, derandomized so a run is reproducible on a fresh machine.
settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
