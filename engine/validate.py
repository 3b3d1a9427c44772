"""``python -m engine.validate PATH...``: check manifests, report every problem.

Each PATH is a manifest file or a directory of them (``*.yaml``, ``*.yml``).
For every manifest: schema (unknown keys are errors, with a "did you mean"),
``extends`` chain, registry names, every template, JMESPath expression and
regex compiled, and the request templates rendered against sample requests
(:func:`~engine.manifest.check.check_file`).

Output, the usual convention for a checker:

* on stderr, one line per problem, ``path/to/file.yaml:LINE: key.path: message``,
  at the line of the key in the file that writes it; a problem seen through
  several manifests (a parent's, checked with each child) is listed once; at
  most :data:`~engine.manifest.compile.LIMIT` per manifest, then one line
  ``...: ... and N more problem(s) not reported`` (or, when checking stopped
  because the report was full, ``... and more problems not reported``). Warnings (configuration
  that restates a default) follow, the same way, as ``...: warning: ...``;
* on stdout, one summary line: ``ok: N manifest(s) valid`` (with
  ``(W warning(s))`` when there are any) or ``K problem(s) in N manifest(s)``
  (``at least K`` when some checking stopped early);
* exit status 1 when there is any problem, else 0 (warnings do not count).

It never shows a traceback: anything unexpected is one report line too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EngineError
from .manifest.check import CheckResult, check_file

__all__ = ["Report", "collect", "main", "run", "validate_all", "validate_paths"]


@dataclass
class Report:
    """What one run found: report lines (each once) and how many problems they stand for."""

    count: int = 0  # manifests checked
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total: int = 0  # problems found, those beyond each manifest's report limit included
    stopped: bool = False  # a manifest's checking stopped early: total is a lower bound
    _seen: set[str] = field(default_factory=set)

    def add(self, line: str, stands_for: int = 1) -> None:
        """Record one problem line (or a line counting *stands_for* unreported ones), once."""
        if line not in self._seen:
            self._seen.add(line)
            self.problems.append(line)
            self.total += stands_for

    def extend(self, result: CheckResult) -> None:
        """Record one manifest's outcome; lines already reported are skipped."""
        last = len(result.problems) - 1 if result.unreported or result.stopped else -1
        for at, line in enumerate(result.problems):
            self.add(line, result.unreported if at == last else 1)
        self.stopped = self.stopped or result.stopped
        for line in result.warnings:
            if line not in self._seen:
                self._seen.add(line)
                self.warnings.append(line)


def collect(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand the command-line paths to manifest files; report missing ones."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            found, problem = _expand(path)
        except OSError as exc:
            found, problem = [], f"{path}:1: (top): cannot read: {exc.strerror or exc}"
        files.extend(found)
        if problem:
            problems.append(problem)
    return files, problems


def _expand(path: Path) -> tuple[list[Path], str | None]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if p.suffix in (".yaml", ".yml") and p.is_file())
        return found, None if found else (
            f"{path}:1: (top): no manifests (*.yaml) in this directory")
    if path.is_file():
        return [path], None
    return [], f"{path}:1: (top): no such file or directory"


def run(paths: Sequence[str]) -> Report:
    """Check every manifest named by *paths* (files or directories)."""
    files, missing = collect(paths)
    report = Report(count=len(files))
    for line in missing:
        report.add(line)
    for path in files:
        report.extend(_check_one(path))
    return report


def validate_paths(paths: Sequence[str]) -> tuple[int, list[str]]:
    """(number of manifests checked, every problem line)."""
    report = run(paths)
    return report.count, report.problems


def validate_all(paths: Sequence[str]) -> tuple[int, list[str], list[str]]:
    """(number of manifests checked, every problem line, every warning line)."""
    report = run(paths)
    return report.count, report.problems, report.warnings


def _check_one(path: Path) -> CheckResult:
    try:
        return check_file(path)
    except EngineError as exc:
        return CheckResult([exc.message])
    except RecursionError:
        return CheckResult([f"{path}:1: (top): nested too deeply to check"])
    except OSError as exc:
        return CheckResult([f"{path}:1: (top): cannot read: {exc.strerror or exc}"])
    except Exception as exc:  # the CLI promise: a report line, never a traceback
        return CheckResult([f"{path}:1: (top): internal error while checking: "
                            f"{type(exc).__name__}: {exc}"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.validate",
        description="Validate provider manifests: problems on stderr as file:line, "
                    "a summary on stdout.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a manifest file or a directory of manifests")
    report = run(parser.parse_args(argv).paths)
    for line in [*report.problems, *report.warnings]:
        print(line, file=sys.stderr)
    if report.problems:
        least = "at least " if report.stopped else ""
        print(f"{least}{report.total} problem(s) in {report.count} manifest(s)")
        return 1
    noted = f" ({len(report.warnings)} warning(s))" if report.warnings else ""
    print(f"ok: {report.count} manifest(s) valid{noted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
