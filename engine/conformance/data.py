"""Where the conformance data is: shipped in the package, or the repository's.

The repository keeps fixtures, recordings, the demo's answers and
``known_failures.yaml`` in its top-level ``conformance/`` folder, where
integrators edit them; the wheel ships the same files as
``engine/conformance/_data``. :func:`data_dir` returns the packaged copy when
it exists, else the repository's (as :func:`engine.manifest.builtin_dir` does
for manifests). :func:`runner_command` is how to start the runner from here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_dir", "in_repository", "runner_command"]

_HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The directory of ``fixtures/``, ``recordings/``, ``demo/``, ``known_failures.yaml``."""
    packaged = _HERE / "_data"
    return packaged if packaged.is_dir() else _HERE.parent.parent / "conformance"


def in_repository() -> bool:
    """True in a source checkout (the data is the repository's), False when installed."""
    return not (_HERE / "_data").is_dir()


def runner_command() -> str:
    """The command that runs the suite: the repository's short form, or the package's."""
    return "python -m conformance" if in_repository() else "python -m engine.conformance"
