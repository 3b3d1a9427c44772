"""``python -m engine.validate PATH...``: check manifests, report every problem.

Each PATH is a manifest file or a directory of them (``*.yaml``, ``*.yml``).
For every manifest: schema (unknown keys are errors), ``extends`` chain,
registry names, every template, JMESPath expression and regex compiled, and
the request templates rendered against sample requests. Problems print one a
line as ``path/to/file.yaml:LINE: key.path: message``; the exit status is 1
when there is any, else 0 with a one-line summary. Warnings (configuration
that restates a default) print the same way, as ``...: warning: ...``, and do
not change the exit status. It never shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import EngineError
from .manifest.check import check_file

__all__ = ["collect", "main", "validate_all", "validate_paths"]


def collect(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand the command-line paths to manifest files; report missing ones."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                problems.append(f"{path}:1: (top): no manifests (*.yaml) in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}:1: (top): no such file or directory")
    return files, problems


def validate_paths(paths: Sequence[str]) -> tuple[int, list[str]]:
    """(number of manifests checked, every problem line)."""
    count, problems, _ = validate_all(paths)
    return count, problems


def validate_all(paths: Sequence[str]) -> tuple[int, list[str], list[str]]:
    """(number of manifests checked, every problem line, every warning line)."""
    files, problems = collect(paths)
    warnings: list[str] = []
    for path in files:
        found, noted = _check_one(path)
        problems.extend(found)
        warnings.extend(noted)
    return len(files), problems, warnings


def _check_one(path: Path) -> tuple[list[str], list[str]]:
    try:
        result = check_file(path)
    except EngineError as exc:
        return [exc.message], []
    except RecursionError:
        return [f"{path}:1: (top): nested too deeply to check"], []
    except Exception as exc:  # the CLI promise: a report line, never a traceback
        return [f"{path}:1: (top): internal error while checking: {type(exc).__name__}: "
                f"{exc}"], []
    return result.problems, result.warnings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.validate",
        description="Validate provider manifests and report every problem as file:line.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a manifest file or a directory of manifests")
    args = parser.parse_args(argv)
    count, problems, warnings = validate_all(args.paths)
    for line in [*problems, *warnings]:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {count} manifest(s)", file=sys.stderr)
        return 1
    noted = f" ({len(warnings)} warning(s))" if warnings else ""
    print(f"ok: {count} manifest(s) valid{noted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
